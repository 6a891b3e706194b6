"""The browser page (``index.html``, ``app.js``, ``style.css``), shipped as package data.

A package of its own only so that packaging lists it: setuptools warns about a data
folder inside a package that is not itself in the ``packages`` configuration. No Python
code lives here; the HTTP surface serves the files.
"""
