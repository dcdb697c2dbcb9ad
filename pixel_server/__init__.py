"""jobpixel: a consent-first analytics pixel and cookie banner for job-ad pages."""

__version__ = "0.1.0"
