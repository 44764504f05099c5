// While a run moves, fetch the part of its page that changes every two seconds.
(function () {
  function refresh() {
    var live = document.getElementById("live");
    if (!live || live.dataset.finished === "true") return;
    fetch(live.dataset.src, { headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null) live.outerHTML = html;
        setTimeout(refresh, 2000);
      })
      .catch(function () { setTimeout(refresh, 5000); });
  }
  setTimeout(refresh, 2000);
})();
