"""Sphinx configuration: the user guide (Markdown in this folder), the API
reference (numpydoc docstrings) and the example gallery (../examples, run at
build time). Built with warnings as errors by .ci/docs."""

import os
import subprocess
import sys
from pathlib import Path

import shallownet

HERE = Path(__file__).resolve().parent

project = "shallownet"
author = "the shallownet developers"
copyright = "the shallownet developers"
release = shallownet.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# -- Markdown (the user guide)
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# -- API reference
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"          # the numpydoc Parameters sections carry the types
autosummary_generate = False        # the API pages are written by hand, one section per name
numpydoc_show_class_members = False  # autodoc's :members: lists the methods once
numpydoc_class_members_toctree = False
# types stay text: linking them needs intersphinx, and the build runs offline
numpydoc_xref_param_type = False

# -- Example gallery
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",      # every plot_*.py runs at build time
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "show_memory": False,
}

# -- HTML
html_theme = "furo"
html_title = f"shallownet {release}"
html_static_path = []
html_show_sourcelink = False


def _write_bench_help(app):
    """The bench page shows the command's own --help, so it cannot go stale."""
    env = dict(os.environ, COLUMNS="88")
    out = subprocess.run([sys.executable, "-m", "shallownet.bench", "--help"], env=env,
                         capture_output=True, text=True, check=True).stdout
    target = HERE / "_generated" / "bench_help.txt"
    target.parent.mkdir(exist_ok=True)
    if not target.exists() or target.read_text() != out:
        target.write_text(out)


def _hide_constructor(app, what, name, obj, options, signature, return_annotation):
    """Model is made by fit() and load(), never by its constructor: no signature."""
    if name == "shallownet.Model":
        return "", None
    return None


def _skip_metadata_requests(app, what, name, obj, skip, options):
    """scikit-learn adds set_*_request methods to every estimator class (metadata
    routing); their docstrings link into scikit-learn's own docs."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
    app.connect("autodoc-process-signature", _hide_constructor)
    app.connect("builder-inited", _write_bench_help)
