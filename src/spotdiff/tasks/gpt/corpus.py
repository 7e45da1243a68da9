"""The gpt task's built-in corpus: English-like text generated from a small seeded grammar.

Offline and identical on every machine: the bytes come from numpy's PCG64 with a fixed seed (not
the run's `--seed`), and `spec.CORPUS_SHA256` checks them, so a numpy release that changed the
stream would stop the task with a clear error instead of silently training on other text. The
grammar gives the model something to learn at every scale a small GPT reaches in a minute: byte
frequencies, spelling, word order, agreement of a subject with its verb, punctuation.
"""

from __future__ import annotations

import numpy as np

CORPUS_SEED = 20170101
CORPUS_SENTENCES = 24_000  # about 1 MB

NAMES = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Ken"]
NOUNS = ["model", "tensor", "graph", "kernel", "gradient", "layer", "compiler", "batch", "device",
         "framework", "optimizer", "network", "weight", "program", "matrix", "engineer", "student",
         "paper", "machine", "function", "loss", "step", "token", "cache"]
ADJECTIVES = ["small", "large", "static", "dynamic", "eager", "fused", "quiet", "careful", "old",
              "new", "fast", "slow", "exact", "noisy", "lazy", "patient", "strange", "simple"]
VERBS = [("trains", "train"), ("compiles", "compile"), ("reads", "read"), ("writes", "write"),
         ("measures", "measure"), ("traces", "trace"), ("follows", "follow"), ("checks", "check"),
         ("updates", "update"), ("explains", "explain"), ("runs", "run"), ("copies", "copy")]
ADVERBS = ["slowly", "quickly", "twice", "again", "carefully", "at last", "every night", "in order"]
PREPOSITIONS = ["on", "with", "after", "before", "under", "beside", "without", "inside"]


def _plural(noun: str) -> str:
    if noun == "matrix":
        return "matrices"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def _noun_phrase(rng: np.random.Generator) -> tuple[str, bool]:
    """A noun phrase and whether it is plural."""
    if rng.random() < 0.15:
        return str(rng.choice(NAMES)), False
    plural = bool(rng.random() < 0.3)
    noun = str(rng.choice(NOUNS))
    noun = _plural(noun) if plural else noun
    words = ["the" if rng.random() < 0.6 else ("some" if plural else "a")]
    if rng.random() < 0.5:
        words.append(str(rng.choice(ADJECTIVES)))
    words.append(noun)
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words), plural


def _sentence(rng: np.random.Generator) -> str:
    subject, plural = _noun_phrase(rng)
    third, base = VERBS[int(rng.integers(len(VERBS)))]
    words = [subject, base if plural else third, _noun_phrase(rng)[0]]
    if rng.random() < 0.4:
        words += [str(rng.choice(PREPOSITIONS)), _noun_phrase(rng)[0]]
    if rng.random() < 0.3:
        words.append(str(rng.choice(ADVERBS)))
    text = " ".join(words)
    end = "?" if rng.random() < 0.1 else "."
    return text[0].upper() + text[1:] + end


def generate() -> bytes:
    """The corpus as UTF-8 (ASCII) bytes: sentences, five to a paragraph on average."""
    rng = np.random.default_rng(CORPUS_SEED)
    parts = []
    for _ in range(CORPUS_SENTENCES):
        parts.append(_sentence(rng))
        parts.append("\n\n" if rng.random() < 0.2 else " ")
    return "".join(parts).encode("ascii")
