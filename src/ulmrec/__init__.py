"""ULMRec: User-centric Large Language Model for Sequential Recommendation, end to end."""

__version__ = "0.1.0"
