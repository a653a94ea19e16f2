"""lapidar: fine-tune Qwen2.5 models on your own data, check the result, and use it."""

__all__ = ["__version__"]

__version__ = "0.1.0"
