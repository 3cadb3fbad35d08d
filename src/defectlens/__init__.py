"""defectlens: find defects without defect labels."""

__version__ = "0.1.0"
