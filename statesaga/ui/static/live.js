// Until a run finishes, fetch the part of its page that changes: every two seconds while it
// moves, every ten while it waits for a signal or a timer (data-pace, in milliseconds).
(function () {
  function refresh() {
    var live = document.getElementById("live");
    if (!live || live.dataset.finished === "true") return;
    fetch(live.dataset.src, { headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null) live.outerHTML = html;
        var now = document.getElementById("live");
        setTimeout(refresh, Number((now && now.dataset.pace) || 2000));
      })
      .catch(function () { setTimeout(refresh, 5000); });
  }
  setTimeout(refresh, 2000);
})();
