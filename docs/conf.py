# Sphinx configuration of netproxy's reference (docs/).
#
# Minimal on purpose: no extension and no intersphinx, so a build needs no
# network and `sphinx-build -W` fails only on the documents' own mistakes.
import configparser
import os

_setup = configparser.ConfigParser()
_setup.read(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "setup.cfg"))

project = "netproxy"
author = "the netproxy authors"
copyright = "netproxy's authors"
release = version = _setup["metadata"]["version"]

extensions: list[str] = []
root_doc = "index"
exclude_patterns = ["_build"]
highlight_language = "none"
html_theme = "alabaster"
html_show_sourcelink = False
