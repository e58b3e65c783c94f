"""The ``vgloss`` description method: prompts grounded in WordNet, an OpenAI-compatible LLM call
with a testable retry policy, and defensive parsing of what comes back.

For each class the prompt gives the synset's lemmas, definition and two levels of hypernyms, plus
up to K *confusable* classes of the same class set (nearest by Wu-Palmer similarity, by name
similarity for classes WordNet does not know) with their definitions, and asks, in one of two
styles (:data:`gloss_gen.data.descriptions.VGLOSS_STYLES`), for N visual texts that tell the class apart
from them:

- ``phrases`` — short phrases, each completing the sentence the instruction shows and the
  ``phrases`` prompt style embeds, ``"{class}, which has {phrase}."`` (or ``"which {phrase}"`` for
  a phrase with its own verb; :func:`gloss_gen.core.prompts.phrase_connective`);
- ``gloss`` — visual glosses that replace the WordNet definition, as in the V-GLOSS paper's
  Table 1 (rooster: "adult male chicken" → "a male bird that is larger than the female and has a
  red comb on its head"), embedded like the ``wordnet`` method's definitions (``gloss`` style).

Every text is cut on a word boundary until its full prompt fits CLIP's 77-token context.

Modules: :mod:`.facts` (what the prompt says about a class), :mod:`.confusables` (Wu-Palmer
neighbours), :mod:`.prompt`, :mod:`.parsing` (answer → descriptions, the 77-token cap) and
:mod:`.llm_client` (the OpenAI-compatible call and its retry policy). The ``fudd`` method's pair
prompt and parsing (two classes, N contrasting attributes) are :mod:`.pair_prompt` and
:mod:`.pair_parsing`. The job around this
(concurrency, resume, error lines) lives in :mod:`gloss_gen.describe.describe_job`.
"""

from gloss_gen.describe.llm.confusables import find_confusables, similarity_matrix
from gloss_gen.describe.llm.facts import ClassFacts, class_facts
from gloss_gen.describe.llm.llm_client import (
    PLACEHOLDER_API_KEY,
    LLMConfigError,
    LLMError,
    RetryPolicy,
    endpoint_label,
    make_client,
    parse_retry_after,
    request_descriptions,
    request_parsed,
)
from gloss_gen.describe.llm.pair_parsing import clean_phrase, extract_contrasts, parse_pair_answer
from gloss_gen.describe.llm.pair_prompt import (
    DEFAULT_N_ATTRIBUTES,
    PAIR_PROMPT_VERSION,
    PAIR_PROMPT_VERSIONS,
    build_pair_messages,
    pair_sentence,
)
from gloss_gen.describe.llm.parsing import (
    CLIP_CONTEXT_LENGTH,
    clean_description,
    clip_token_count,
    extract_descriptions,
    fit_clip_context,
    parse_descriptions,
)
from gloss_gen.describe.llm.prompt import PROMPT_VERSION, PROMPT_VERSIONS, build_messages

__all__ = [
    "CLIP_CONTEXT_LENGTH",
    "DEFAULT_N_ATTRIBUTES",
    "PAIR_PROMPT_VERSION",
    "PAIR_PROMPT_VERSIONS",
    "PLACEHOLDER_API_KEY",
    "PROMPT_VERSION",
    "PROMPT_VERSIONS",
    "ClassFacts",
    "LLMConfigError",
    "LLMError",
    "RetryPolicy",
    "build_messages",
    "build_pair_messages",
    "class_facts",
    "clean_description",
    "clean_phrase",
    "clip_token_count",
    "endpoint_label",
    "extract_contrasts",
    "extract_descriptions",
    "find_confusables",
    "fit_clip_context",
    "make_client",
    "pair_sentence",
    "parse_pair_answer",
    "parse_descriptions",
    "parse_retry_after",
    "request_descriptions",
    "request_parsed",
    "similarity_matrix",
]
