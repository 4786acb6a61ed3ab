"""The toy masked diffusion LM shipped with hexlab: its task, tokenizer and training."""

from hexlab.toy.problems import Difficulty, Problem, make_problem, make_problems

__all__ = ["Difficulty", "Problem", "make_problem", "make_problems"]
