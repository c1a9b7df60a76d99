"""Few-shot evaluation of trained models: tasks, prompts, generation, scoring, sandboxed code."""
