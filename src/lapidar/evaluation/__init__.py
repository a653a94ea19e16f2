"""Knowing whether a fine-tune worked: metrics, the `eval` recipe, the run diagnosis and the HTML report.

Import from the submodules (`lapidar.evaluation.metrics`, `.evaluate`, `.diagnosis`, `.report`); this package
itself loads nothing heavy.
"""

__all__: list[str] = []
