"""Cannot be imported: raises while the module body runs."""

raise ImportError("this module needs a GPU library that is not installed")
