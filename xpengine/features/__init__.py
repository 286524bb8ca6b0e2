"""Pure, vectorised feature steps: arrays in, arrays out, no I/O."""

from xpengine.features.vocabulary import PAPER_VOCABULARY, Token, Vocabulary, paper_vocabulary

__all__ = ["PAPER_VOCABULARY", "Token", "Vocabulary", "paper_vocabulary"]
