"""Export building blocks: merged Hugging Face folders, GGUF files, Ollama Modelfiles and equivalence checks.

The recipe that wires them together is `lapidar.recipes.export`.
"""
