"""pytest hooks for pytest-scaling: options, markers, fixtures, summary and report files."""
