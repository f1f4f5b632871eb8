"""Sphinx configuration for the nn documentation.

Build (warnings are errors), from the repository root::

    python3 -m sphinx -W --keep-going -c docs -b html . docs/_build/html

The source directory is the repository root, read only in docs/ and spec/: the spec pages
are documents where they live, so their links to each other resolve as on GitHub.
"""

from __future__ import annotations

import sys
from pathlib import Path

# autodoc imports `nn` from the repository root, without installing it.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nn  # noqa: E402

project = "nn"
author = "nn contributors"
copyright = "nn contributors"
release = nn.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    # Sets mathjax_path to a bundled copy of MathJax: the site reads offline, no CDN.
    "sphinx-mathjax-offline",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "docs/index"
include_patterns = ["docs/**", "spec/**"]
exclude_patterns = ["docs/_build"]
html_extra_path = ["_extra"]  # relative to docs/: an index.html at the top, pointing to docs/

# MyST: $...$ and $$...$$ math (as the spec pages write it), amsmath environments,
# and anchors on headings down to ###, so [text](page.md#a-heading) links resolve.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# autodoc: members in source order, signatures as written, type hints in the description.
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "alabaster"
html_title = f"nn {release}"
html_theme_options = {
    "description": "Neural networks from scratch in NumPy, every equation specified and verified",
    "fixed_sidebar": True,
}
