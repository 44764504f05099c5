"""``statesaga ui``: a web inspector for the runs in a store (an ASGI app on Starlette).

``queries`` reads what a page shows, ``diagrams`` draws sagas and runs, ``views`` answers the
pages and the JSON API, ``actions`` the POSTs that change runs (only with ``--allow-actions``),
and ``app`` puts them together. Starlette is imported only by ``views``, ``actions`` and
``app``, which the ``ui`` extra makes installable: ``pip install 'statesaga[ui]'`` (from a
checkout of the repository, ``pip install -e '.[ui]'``).
"""
