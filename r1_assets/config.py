"""Pipeline configuration: one YAML file (``R1_CONFIG``) or the packaged embedded default.

Every section is a pydantic model with ``extra="forbid"`` so that a typo is a
clear error naming the section and the key, never a stack trace from deep inside.
Relative paths resolve against the folder of the config file.
"""

from __future__ import annotations

import os
import re
import string
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CONFIG_NAME = "embedded_default.yaml"


class ConfigError(ValueError):
    """A configuration problem, phrased for the person who wrote the YAML."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Domain = Literal["math", "code", "mcq", "puzzle"]
DOMAINS: tuple[str, ...] = ("math", "code", "mcq", "puzzle")


class SourceConfig(_Section):
    """One input collection. Each configured source becomes one partition of ``raw_problems``."""

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
    kind: Literal["file", "hf", "reasoning_gym"]
    # Which verifier checks its answers: math-verify, the code sandbox, the option letter, or the
    # reasoning-gym task's own scorer (puzzle: reasoning_gym sources only).
    domain: Domain = "math"
    # Field paths into a row: a column name, or a dotted/indexed path such as ``prompt[0].content``.
    problem: str = "problem"
    # null where the domain needs no answer (code is checked by its tests).
    answer: str | None = "answer"
    # domain code: a list of Python assert statements, or {"inputs": [...], "outputs": [...]}.
    tests: str | None = None
    # domain mcq: a list of option texts (or one "A) .. B) .." string); `answer` is an index or a letter.
    choices: str | None = None
    # kind=file: jsonl, json (array) or parquet. Resolved against the config file's folder.
    path: str | None = None
    # kind=hf: arguments of ``datasets.load_dataset``.
    dataset: str | None = None
    config: str | None = None
    split: str = "train"
    revision: str | None = None
    data_files: str | list[str] | None = None
    # kind=reasoning_gym: the task, and its dataset settings (digits, terms, operators, ...), the
    # keyword arguments of ``reasoning_gym.create_dataset`` besides size and seed.
    task: str | None = None
    task_config: dict[str, Any] = {}
    size: int = Field(default=500, gt=0)
    seed: int = 1
    # Any kind: skip the first `skip` rows, then keep at most `limit` (before normalising); a
    # file's slice such as MBPP's test split (rows 10-509). None keeps all.
    skip: int = Field(default=0, ge=0)
    limit: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _code_needs_no_answer(cls, data):
        # A code problem is checked by its tests: without an explicit `answer:` it has none.
        if isinstance(data, dict) and data.get("domain") == "code" and "answer" not in data:
            data = {**data, "answer": None}
        return data

    @model_validator(mode="after")
    def _kind_fields(self) -> SourceConfig:
        needed = {"file": "path", "hf": "dataset", "reasoning_gym": "task"}[self.kind]
        if getattr(self, needed) in (None, ""):
            raise ValueError(f"kind '{self.kind}' needs key '{needed}'")
        if self.domain == "puzzle" and self.kind != "reasoning_gym":
            raise ValueError("domain 'puzzle' is scored by a reasoning-gym task: needs kind 'reasoning_gym'")
        return self


class DedupeConfig(_Section):
    """Exact and near-duplicate removal (``unique_problems``).

    Defaults follow datatrove's MinHash deduplication: word 5-gram shingles, 14 bands x 8 rows
    = 112 permutations, an LSH threshold near (1/14)^(1/8) = 0.72. text-dedup uses the same
    5-grams and a 0.7 threshold (with 256 permutations); 112 is within its accuracy at a
    little under half the cost. Unlike both, LSH candidates are confirmed by their estimated
    Jaccard similarity (``threshold``), which removes most of the banding's false positives.
    """

    # Tokens are lower-cased words and single symbols (``x^2+1`` -> x ^ 2 + 1): math lives in
    # its symbols, so they count, and digits are kept (a changed number is a different problem).
    shingle_size: int = Field(default=5, gt=0)
    num_perm: int = Field(default=112, gt=0)
    bands: int = Field(default=14, gt=0)
    rows: int = Field(default=8, gt=0)
    # Candidate pairs from LSH are confirmed when their estimated Jaccard reaches this.
    threshold: float = Field(default=0.7, gt=0, le=1)
    seed: int = 1
    # Representative choice inside a cluster: rows with an answer first, then this source order
    # (sources not listed follow in config order), then the lower source_row.
    source_priority: list[str] = []
    # LSH buckets larger than this (templated text) are linked to their next
    # ``max_bucket_neighbors`` members only, so the candidate count stays linear.
    max_bucket_neighbors: int = Field(default=64, gt=0)
    # Rows per MinHash batch: bounds the working memory (~rows x 60 shingles x num_perm x 4 B).
    batch_rows: int = Field(default=20_000, gt=0)
    # Neither the LSH candidate pairs (hundreds of millions at 10M rows) nor the signatures
    # (7.7M distinct x 112 x 4 B = 3.2 GiB at 10M) fit beside the input in 8 GiB, so both are
    # written to disk: signatures and band keys batch by batch, candidate pairs band by band.
    # None: a temporary folder under ``$R1_HOME/tmp``, removed afterwards (also on error). Point
    # it at a fast local disk if $R1_HOME is on a slow one; it needs ~8 B per raw candidate pair
    # plus (num_perm x 4 + bands x 8) B per distinct problem.
    spill_dir: str | None = None
    # Signatures are read back in blocks of this many rows and candidate pairs are filed by
    # their pair of blocks, so verification holds two blocks (2 x 1M x 448 B = 0.9 GiB at the
    # defaults) and one file of pairs. Smaller blocks cost memory less, re-reads more; a pool of
    # up to this many distinct problems is one block, read once. Past 31 blocks (32M rows at the
    # default) the blocks grow, to keep the files (one per block pair) under the open-file limit.
    signature_block_rows: int = Field(default=1 << 20, gt=0)
    # Distinct candidate pairs per verification and union-find step (their arrays: ~2 MB at the
    # default). Signature rows are gathered for 2,048 pairs at a time into reused buffers
    # (``dedupe._JACCARD_ROWS``): one gather of all 5M pairs of a 1M-row pool took 4.4 GiB and
    # was 5x slower from page faults, and 65,536-pair gathers were 2x slower than cache-sized ones.
    pair_chunk: int = Field(default=65_536, gt=0)
    # Optional semantic pass (as AM and NeMo Curator): after MinHash, the cluster representatives
    # are embedded with all-MiniLM-L6-v2 (r1_assets.embeddings, the embeddings of semantic
    # decontamination) and two clusters merge when their representatives' cosine reaches
    # semantic_threshold (duplicate_problems.method = semantic, similarity = that cosine). Off:
    # ~45 rows/s on 2 CPU cores; semantic_device cuda on a GPU executor. 0.95: on the labelled
    # decontamination pairs one clean pair of 399 reached 0.95 (two at 0.93).
    semantic: bool = False
    semantic_threshold: float = Field(default=0.95, gt=0, le=1)
    semantic_device: str = "cpu"

    @model_validator(mode="after")
    def _bands_fit(self) -> DedupeConfig:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows ({self.bands}*{self.rows}) exceeds num_perm ({self.num_perm})")
        return self


# The instruction suffixes evaluation harnesses append to benchmark prompts (Qwen2.5-Math,
# DeepSeek-R1, DeepScaleR/verl). They are not part of the problem, and left in they would make
# every pool row that carries the same instruction share n-grams with every benchmark row.
DEFAULT_STRIP_PHRASES = [
    "Please reason step by step, and put your final answer within \\boxed{}.",
    "Let's think step by step and output the final answer within \\boxed{}.",
]


class SamplingConfig(_Section):
    n: int = Field(default=8, gt=0)
    temperature: float = Field(default=0.7, ge=0)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: int = Field(default=1024, gt=0)
    seed: int = 0


JUDGE_TEMPLATE_FIELDS = ("pool_problem", "benchmark_problem")
DEFAULT_CONTAMINATION_JUDGE_PROMPT = (
    "You are checking whether a training problem is a copy of a benchmark problem.\n\n"
    "Training problem:\n{pool_problem}\n\nBenchmark problem:\n{benchmark_problem}\n\n"
    "They are the same problem if they ask the same question about the same quantities, possibly "
    "reworded, reformatted, or with renamed objects or people. They are different if the question, "
    "the numbers or the conditions differ. Reply with exactly one word on the last line: EQUIVALENT "
    "if they are the same problem, DIFFERENT otherwise."
)


class DecontaminationConfig(_Section):
    """Decontamination of ``unique_problems`` against every configured benchmark (``clean_problems``)."""

    # Each method is switchable; every hit records which one found it (contamination.method):
    # - ngram: Open-R1's check (lower-case, collapse whitespace, any shared word n-gram); a pool
    #   problem shorter than n words is matched on its whole text instead (method exact_short);
    # - digit_stripped: after Light-R1, the text with every number masked equals or contains a
    #   benchmark row's, which catches copies whose numbers were changed (the math's signs and
    #   operators must agree; Light-R1 kept letters only);
    # - minhash: estimated Jaccard of the dedupe shingles (dedupe.shingle_size/num_perm/seed)
    #   at or above minhash_threshold, which catches reworded copies.
    # - semantic: cosine of all-MiniLM-L6-v2 embeddings (r1_assets.embeddings) of the
    #   pool text against its semantic_top_k nearest benchmark rows, at or above
    #   semantic_threshold; catches paraphrases that share few words. Only the pairs at TF-IDF
    #   cosine >= semantic_min_tfidf are embedded and compared (r1_assets/tfidf.py). On by
    #   default: without it the reworded copies (AIME 2025's two wordings, DAPO's rewrites) are
    #   missed (labelled set: reformatted 0.91, paraphrases 0.83, against 1.00 and 0.93 with it).
    #   It is the slow method on a CPU (~3,300 pool rows/s with native bfloat16, ~740 without);
    #   drop it from methods for the fastest pass, or set semantic_device: cuda.
    methods: list[Literal["ngram", "digit_stripped", "minhash", "semantic"]] = ["ngram", "digit_stripped", "minhash", "semantic"]
    semantic_threshold: float = Field(default=0.9, gt=0, le=1)
    semantic_top_k: int = Field(default=3, gt=0)
    # The cheap pass before embedding: a (pool, benchmark) pair is compared by embeddings only
    # when the TF-IDF cosine of its word unigrams and bigrams reaches this. Every pair at
    # embedding cosine >= 0.9 had TF-IDF >= 0.5 (labelled set: >= 0.59; a 3,000-row pool
    # sample: >= 0.507), while only ~1.5% of the shared pools' rows reach 0.5 against some
    # benchmark row, so the rest is never embedded (48x faster). With a lower
    # semantic_threshold lower it too: 0.3 for 0.85 (docs/benchmarks.md).
    semantic_min_tfidf: float = Field(default=0.5, gt=0, le=1)
    # cpu, or cuda on a GPU executor.
    semantic_device: str = "cpu"
    # The check that tells a copy from another exercise of the benchmark row's template
    # (decontamination._confirm_hits). The numbers agree when the pool row holds at least
    # same_numbers_share of the benchmark row's numbers (digits and number words, with repeats).
    # A semantic hit needs them to agree: a paraphrase keeps its problem's numbers. An ngram hit
    # on part of the benchmark row whose numbers disagree needs its math (text.math_skeletons:
    # the math with numbers and one-letter names masked) at least ngram_min_math_similarity alike.
    # On the labelled set (docs/benchmarks.md, 2026-12-04) they drop 4 semantic hits on look-alike
    # exercises ("Compute $\arcsin(-\frac{\sqrt3}{2})$" / "$(-\frac12)$", numbers 0.5) and 3
    # ngram hits on a template's instruction around another expression (math 0.27-0.72), and no
    # copy: the copies only the semantic method finds keep >= 0.75 of the numbers, and every
    # number-changed copy found by ngram has math >= 0.89 alike. 0 turns a check off.
    same_numbers_share: float = Field(default=0.7, ge=0, le=1)
    ngram_min_math_similarity: float = Field(default=0.8, ge=0, le=1)
    # ... and for an ngram hit with ngram_min_shared evidence n-grams or more (a 19-word run):
    # the run is evidence enough that a changed answer format ("in the form $\frac{m}{n}$ ...
    # $m^2+n^2$" / "in the form \(\frac{k}{m}\) ... \(k+m\)", math 0.6) is a reformatting,
    # while a template's long instruction around another equation ("Determine if the graph of
    # the equation below is a parabola, circle, ...", 13 8-grams) still differs (math 0.27-0.29).
    ngram_long_run_min_math_similarity: float = Field(default=0.5, ge=0, le=1)
    # Open-R1 uses word 8-grams.
    ngram: int = Field(default=8, gt=0)
    # An n-gram found in at least this many distinct benchmark problems is the benchmark's
    # boilerplate ("where $m$ and $n$ are relatively prime positive", "is not divisible by the
    # square of any"), not evidence of one problem: on the shared pools such phrases alone
    # flagged ~1,900 AIME-style problems. 3 keeps n-grams shared by two rows, which is how the
    # two wordings of one AIME 2025 problem overlap. 0 = every n-gram counts. (ngram_rule: scaled)
    ngram_boilerplate_rows: int = Field(default=3, ge=0)
    # The same from the pool's side: an n-gram that this many distinct pool problems share with
    # a benchmark is phrasing ("$n$ is not divisible by the square of", "find the sum of all
    # positive integers $n$"), since a copied problem is one problem (and its few near-copies),
    # not dozens. On the shared pools the top phrases were shared by 30-150 problems, while the
    # largest near-duplicate cluster holds 14 rows. 0 = count every n-gram. (ngram_rule: scaled)
    # Problems are told apart by the numbers they carry (decontamination.number_signatures), so
    # the copies of one problem across pools count once and the exercises of one template ("Convert
    # the point $(0,3)$ ... to polar coordinates", "Determine if the graph of the equation below
    # is a parabola, ...") count one each. 3 such problems is the best of 2-5 on the labelled set
    # (docs/benchmarks.md, 2026-12-03): precision 0.888 -> 0.931 at recall 0.888 -> 0.879
    # against 5 pool rows counted one per row; 2 loses a third of the number-changed copies.
    ngram_boilerplate_pool_rows: int = Field(default=3, ge=0)
    # When a (pool, benchmark) pair is an n-gram hit:
    # - scaled: its evidence scales with the text. The pair shares at least ngram_min_share of
    #   the benchmark row's evidence n-grams (its distinct n-grams less both boilerplate lists),
    #   or at least ngram_min_shared evidence n-grams. One or two shared 8-grams of stock
    #   phrasing ("what is the ratio of the area of") are not a copy (docs/decontamination.md);
    # - any: Open-R1's rule, for reproducing it: one shared n-gram is a hit and every n-gram
    #   counts (both boilerplate lists are off).
    ngram_rule: Literal["scaled", "any"] = "scaled"
    ngram_min_share: float = Field(default=0.5, gt=0, le=1)
    ngram_min_shared: int = Field(default=12, gt=0)
    # A share-based hit also needs this many evidence n-grams (5 8-grams = a 12-word run, the
    # labelling rule's "~12 words of shared setup"), unless it holds all of the benchmark row's:
    # on a short benchmark row 2-4 shared 8-grams are its instruction ("what real values of $x$
    # are not in the domain of"), not its problem.
    ngram_min_evidence: int = Field(default=5, gt=0)
    # Number-masked keys with fewer letters than this never match: a key like "compute" (from
    # "Compute $7^3$.") is a phrase, not a problem. Set from the labelled set: below 60 letters
    # every sampled hit was an exercise template ("whatistheremainderwhenisdividedby", 33).
    digit_stripped_min_chars: int = Field(default=60, ge=0)
    # The method's second test, for a number-changed copy whose math changed shape a little too
    # (a sign, one more term: "$|x-7|-3=-2$" / "$|x-4|-10=2$"), which the masked key cannot
    # match: the benchmark row's worded setup (text.setup_keys: its words outside the math,
    # numbers masked) word for word, at least digit_stripped_min_words words long (the labelling
    # rule's ~12 words of setup), around math at least digit_stripped_min_math_similarity alike
    # (both sides must have math: "the distance between the points $(-3,-4)$ and $(4,-5)$" has
    # none to compare). A setup that digit_stripped_template_pool_rows distinct pool problems
    # share is a template ("Convert the point ... to polar coordinates", 4 in MATH train), as for
    # ngram_boilerplate_pool_rows. On the labelled set (docs/benchmarks.md, 2026-12-06) it adds
    # 2 number-changed copies and no clean pair: the clean pairs with the same setup had math
    # <= 0.76 alike or a template setup.
    digit_stripped_min_words: int = Field(default=12, gt=0)
    digit_stripped_min_math_similarity: float = Field(default=0.85, ge=0, le=1)
    digit_stripped_template_pool_rows: int = Field(default=3, gt=1)
    # 0.75 on the canonical text: at 0.6-0.7 templates with a changed word ("arrange the letters
    # of the word TARTAR" / "ELLIPSE", J = 0.62-0.65) pass.
    minhash_threshold: float = Field(default=0.75, gt=0, le=1)
    # LSH layout for the minhash method: 28 bands x 4 rows has its S-curve midpoint near
    # (1/28)^(1/4) = 0.43, so pairs at the 0.6 threshold are found with probability > 0.99;
    # the candidates are then confirmed by estimated Jaccard. Needs bands*rows <= dedupe.num_perm.
    minhash_bands: int = Field(default=28, gt=0)
    minhash_rows: int = Field(default=4, gt=0)
    # Removed from benchmark and pool text before matching (exact substrings of the stored text).
    strip_phrases: list[str] = DEFAULT_STRIP_PHRASES
    # clusters: check every member of each kept near-duplicate cluster and drop the cluster when
    #   any member matches (a kept row whose near-duplicate copies a benchmark is not clean);
    # kept: check only the kept representatives (Open-R1's behaviour; cheaper).
    scope: Literal["clusters", "kept"] = "clusters"
    # A pool problem sharing n-grams with many benchmark rows records its strongest matches
    # only (most shared n-grams first); it is contaminated either way.
    max_matches_per_problem: int = Field(default=5, gt=0)
    # Pool rows per chunk: bounds the working memory (tokens, n-grams and signatures of a chunk).
    batch_rows: int = Field(default=50_000, gt=0)
    # A labelled set of (pool, benchmark) pairs (JSONL, as tests/data/decontamination_labels.jsonl;
    # resolved against the config's folder): clean_problems then reports precision and recall on
    # the labelled pairs whose two texts are in the run.
    labelled_set: str | None = None
    # Optional LLM paraphrase judge (a `models:` role; None = no judge): every hit of
    # judge_methods is shown to it, pool text beside benchmark text, and it answers EQUIVALENT
    # or DIFFERENT (r1_assets.contamination_judge). A hit it calls DIFFERENT stays in
    # `contamination` (judge_verdict, judge_model) but no longer removes the problem; EQUIVALENT,
    # AMBIGUOUS (no verdict word) or a failed request keep the hit, so an unsure judge never lets
    # a possible copy into training. Semantic hits by default: the cosine is the method that
    # flags rewordings and look-alike exercises alike (docs/decontamination.md). digit_stripped
    # hits are number-changed copies by design, which the default prompt calls DIFFERENT.
    judge_model: str | None = None
    judge_methods: list[Literal["ngram", "exact_short", "digit_stripped", "minhash", "semantic"]] = ["semantic"]
    # {pool_problem} and {benchmark_problem} are the two texts (harness phrases left in).
    judge_prompt_template: str = DEFAULT_CONTAMINATION_JUDGE_PROMPT
    # Greedy, one answer per pair; the verdict word ends a short reply. A reasoning judge (R1)
    # needs far more tokens: a reply cut off before its verdict is AMBIGUOUS, so the hit stays.
    judge_sampling: SamplingConfig = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_tokens=256)

    @model_validator(mode="after")
    def _methods_valid(self) -> DecontaminationConfig:
        if not self.methods:
            raise ValueError("methods: enable at least one of ngram, digit_stripped, minhash, semantic")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: duplicates in {self.methods}")
        if self.judge_model is not None:
            # exact_short hits come from the ngram method.
            enabled = {*self.methods, *(["exact_short"] if "ngram" in self.methods else [])}
            idle = [m for m in self.judge_methods if m not in enabled]
            if not self.judge_methods or idle:
                raise ValueError(f"judge_methods: {idle or 'empty'}: the judge reviews hits of enabled methods"
                                 f" only (methods: {self.methods})")
            fields = {f for _, f, _, _ in string.Formatter().parse(self.judge_prompt_template) if f is not None}
            if fields - set(JUDGE_TEMPLATE_FIELDS):
                allowed = ", ".join("{" + f + "}" for f in JUDGE_TEMPLATE_FIELDS)
                raise ValueError(f"judge_prompt_template: unknown placeholders"
                                 f" {sorted(fields - set(JUDGE_TEMPLATE_FIELDS))}; it may use {allowed}")
        return self


class PricingConfig(_Section):
    """USD per million tokens, as the provider bills them (``generations.cost_usd``)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)  # completion tokens, reasoning tokens included
    # Prompt tokens served from the provider's prompt cache (usage.prompt_tokens_details.cached_tokens);
    # None = billed as input.
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class StepResources(_Section):
    """What one engine step (one shard) of a model role asks its executor for.

    ``num_gpus`` becomes dagster-k8s' ``nvidia.com/gpu`` limit (rounded up; none at 0) and
    Ray's ``num_gpus``; ``num_cpus`` and ``custom`` (Ray custom resources, e.g. a node label
    like ``{a100: 1}``) go to Ray only. The in-process and multiprocess executors ignore them.
    """

    num_gpus: float = Field(default=1, ge=0)
    num_cpus: float | None = Field(default=None, ge=0)
    custom: dict[str, float] = {}


class ModelConfig(_Section):
    """A model the pipeline samples from.

    ``name`` is an HF hub id, a local folder, or ``small_model`` for the packaged
    SmolLM2-135M-Instruct converted by the ``small_model`` asset.
    """

    name: str
    # vllm: in-process; openai: an OpenAI-compatible server, one request per sample;
    # openai_batch: the same server's Batch API (/files + /batches; about half the price at
    # providers), resumed from the batch ids recorded under $R1_HOME/batches after a crash.
    engine: Literal["vllm", "openai", "openai_batch"] = "vllm"
    # Prices of this model (both engines); None = cost_usd stays NULL.
    pricing: PricingConfig | None = None
    # engine=openai/openai_batch: base URL of an OpenAI-compatible server; the API key comes from api_key_env.
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    served_model_name: str | None = None
    # Requests in flight; vllm serve batches them continuously, so this is its batch size.
    max_concurrency: int = Field(default=32, gt=0)
    # Per request: a 16k-token R1 trace at ~30 tok/s per sequence takes ~9 minutes.
    request_timeout_s: float = Field(default=600.0, gt=0)
    # Retries of 429/5xx/timeouts/dropped connections/malformed bodies. A 429 or 503 with
    # Retry-After (seconds or an HTTP date) waits exactly that long; otherwise exponential
    # backoff from retry_backoff_s (x2 per attempt, jittered, capped at 60 s).
    max_retries: int = Field(default=4, ge=0)
    retry_backoff_s: float = Field(default=1.0, ge=0)
    # Client-side limits (engine=openai), on top of max_concurrency: requests started per minute
    # (retries count) and tokens per minute (estimated as prompt + max_tokens when a request
    # starts, corrected from usage when it ends). Token buckets holding one second's worth, so
    # bursts stay small; limits hold per engine (one model role in one process). None = no limit.
    max_requests_per_minute: float | None = Field(default=None, gt=0)
    max_tokens_per_minute: float | None = Field(default=None, gt=0)
    # engine=openai_batch: seconds between two status polls of a submitted batch.
    batch_poll_s: float = Field(default=30.0, gt=0)
    # Give up (keeping what finished) when this many requests in a row failed after their
    # retries: the server is down, not one prompt bad.
    failure_budget: int = Field(default=16, gt=0)
    # engine=vllm. "auto": the model's own dtype on GPU; on CPU bfloat16 only where the CPU
    # has native bfloat16 (AVX512-BF16/AMX), else float32 (3x faster there, see engines.vllm_dtype).
    dtype: str = "auto"
    max_model_len: int | None = None
    enforce_eager: bool = False
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    # Samples per checkpoint write to `generations` (both engines) and, for vllm, sequences
    # in flight (max_num_seqs). For a 135M model on 2 CPU cores: ~1000 tok/s at 64 with native
    # bfloat16 (../shared/NOTES.md), ~116 tok/s in float32 on an AVX2-only CPU.
    batch_size: int = Field(default=64, gt=0)
    # Per engine step on a cluster (dagster-k8s pods, Ray jobs): one GPU per shard by default;
    # a served model (engine openai) needs none.
    step_resources: StepResources = StepResources()


class PromptTemplates(_Section):
    """The user message per domain; ``{problem}`` is the problem text (for mcq: with its shuffled,
    lettered options), ``{tests}`` the tests shown to a code problem (every assert, or the first
    stdin/stdout case). Defaults are Open-R1's."""

    math: str = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    code: str = ("{problem}\nYour code should pass these tests:\n{tests}\n\nPlease reason step by step, then "
                 "write your complete solution in a single fenced code block:\n```python\n# your code here\n```")
    mcq: str = ("{problem}\nPlease reason step by step, and put the letter of your answer within \\boxed{{}}, "
                "e.g. \\boxed{{A}}.")
    puzzle: str = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."


class DifficultyConfig(_Section):
    """Pass rates (``pass_rates``): k samples per problem from ``model``, scored by math-verify."""

    # A role in `models:`.
    model: str = "small"
    # Open-R1's pass-rate filter: k=8 samples at temperature 0.7, top_p 0.95.
    sampling: SamplingConfig = SamplingConfig()
    prompt_templates: PromptTemplates = PromptTemplates()
    # Problems per shard partition (Open-R1 runs 200 rows per job).
    shard_size: int = Field(default=200, gt=0)
    # Answer extraction: small models rarely write \boxed{}; lenient extraction falls back to
    # the last number of the answer when there is no boxed/LaTeX answer (see difficulty.py).
    lenient_extraction: bool = True
    # Difficulty bands reported in the asset metadata: [e0,e1), ..., the last one closed.
    band_edges: list[float] = [0.0, 0.25, 0.5, 0.75, 1.0]


class DistillationConfig(_Section):
    """Teacher chain-of-thought samples (``distillations``), one partition per shard of ``pass_rates``."""

    # A `models:` role. Production: DeepSeek-R1 behind an OpenAI-compatible server, or an
    # R1-distill model on vLLM GPU executors; the embedded default uses the small model.
    model: str = "teacher"
    # R1's recommended sampling: temperature 0.6, top_p 0.95; R1 needs up to 16k tokens
    # (OpenR1-Math-220k used 16k). n=4 is inside OpenR1-Math's 2-4 generations per problem.
    sampling: SamplingConfig = SamplingConfig(n=4, temperature=0.6, top_p=0.95, max_tokens=16384)
    # Open-R1's prompts.
    prompt_templates: PromptTemplates = PromptTemplates()
    # Which problems of a shard to distil:
    # - pass_rate_band: those whose pass rate under difficulty.model lies inside `band` (closed);
    #   problems without a pass rate (unparseable/missing reference) are never selected;
    # - all: every clean problem of the shard.
    # Distillations share the pass_rates shards (difficulty.shard_size).
    selection: Literal["pass_rate_band", "all"] = "pass_rate_band"
    # The one pass-rate band of the pipeline. Open-R1's demo filter keeps 0.2 < pass rate < 0.8
    # (cluster.yaml); the default keeps every scored problem.
    band: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _band_ordered(self) -> DistillationConfig:
        lo, hi = self.band
        if not 0 <= lo <= hi <= 1:
            raise ValueError(f"band must satisfy 0 <= low <= high <= 1, got {list(self.band)}")
        return self


DEFAULT_JUDGE_PROMPT = (
    "You are checking a student's final answer to a math problem against the reference answer.\n\n"
    "Problem:\n{problem}\n\nReference answer:\n{reference}\n\nStudent's final answer:\n{answer}\n\n"
    "Are the two answers mathematically equivalent? Reply with exactly one word on the last line: "
    "EQUIVALENT, DIFFERENT, or AMBIGUOUS (if the reference or the student's answer cannot be judged)."
)


class CodeVerificationConfig(_Section):
    """The code sandbox (see r1_assets/verification/code.py)."""

    # bwrap: bubblewrap sandbox (required unless set to none). none runs model-written code
    # unsandboxed, under rlimits only, and every materialization's metadata says so.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    # The interpreter inside the sandbox: a system python (standard library only), readable by
    # an unprivileged user.
    python: str = "/usr/bin/python3"
    wall_timeout_s: float = Field(default=10.0, gt=0)
    cpu_s: int = Field(default=10, gt=0)
    memory_bytes: int = Field(default=1 << 30, gt=0)
    max_processes: int = Field(default=64, gt=0)
    max_file_bytes: int = Field(default=16 << 20, gt=0)


class PuzzleVerificationConfig(_Section):
    # reasoning-gym scores in [0, 1]; partial credit below this counts as wrong.
    min_score: float = Field(default=1.0, ge=0, le=1)


class VerificationConfig(_Section):
    """Checks of every teacher sample (``verified_distillations``)."""

    # math-verify budget per sample (parse reference + parse answer + compare); Open-R1 uses 5 s.
    timeout_s: int = Field(default=5, gt=0)
    # Verification processes; None = the cores this process may use.
    workers: int | None = Field(default=None, gt=0)
    # Fall back to the last number of the text when math-verify extracts nothing. Off by
    # default: a teacher is asked to box its answer, and unboxed ones are format problems.
    lenient: bool = False
    # Flag samples without a <think> block (for reasoning teachers such as R1 that must think).
    require_think: bool = False
    # Degenerate repetition: the text ends in a block (1..repetition_max_period chars) repeated
    # at least repetition_min_repeats times covering repetition_min_chars, or the whole text of
    # at least 2000 chars compresses below repetition_max_zlib_ratio (normal CoT is ~0.3).
    repetition_max_period: int = Field(default=300, gt=0)
    repetition_min_repeats: int = Field(default=4, gt=1)
    repetition_min_chars: int = Field(default=200, gt=0)
    repetition_max_zlib_ratio: float = Field(default=0.1, gt=0, le=1)
    # Per-domain verifiers (math uses timeout_s and lenient above).
    code: CodeVerificationConfig = CodeVerificationConfig()
    puzzle: PuzzleVerificationConfig = PuzzleVerificationConfig()
    # Optional LLM judge (a `models:` role) for samples math-verify rejects or cannot parse; its
    # EQUIVALENT/DIFFERENT/AMBIGUOUS is stored in judge_verdict, `correct` stays math-verify's.
    judge_model: str | None = None
    judge_prompt_template: str = DEFAULT_JUDGE_PROMPT
    # Greedy judging; a short answer is enough.
    judge_sampling: SamplingConfig = SamplingConfig(n=1, temperature=0.0, top_p=1.0, max_tokens=512)
    # Asset checks: fail above these shares of a shard's samples; warn when more than
    # warn_truncated_share of them hit max_tokens.
    max_unparseable_reference_share: float = Field(default=0.2, ge=0, le=1)
    max_timeout_share: float = Field(default=0.05, ge=0, le=1)
    warn_truncated_share: float = Field(default=0.5, ge=0, le=1)


class SplitsConfig(_Section):
    """Light-R1's two-stage SFT curation (see r1_assets/splits.py for the exact rules).

    Stage 1 keeps problems whose pass rate under ``difficulty.model`` is below ``alpha`` and
    that have a verified, complete teacher solution. Stage 2 keeps the stage-1 problems whose
    pass rate under ``stage2_model`` is below ``stage2_alpha`` and whose teacher samples are
    neither all correct nor all wrong.
    """

    # Light-R1 kept problems a 1.5B model solves less than half the time; the embedded default
    # raises it because a 135M model solves almost nothing.
    alpha: float = Field(default=0.5, ge=0, le=1)
    # A `models:` role, or a model name as stored in pass_rates.model. None = difficulty.model,
    # so stage2_alpha acts as a stricter threshold on the same pass rates.
    stage2_model: str | None = None
    stage2_alpha: float = Field(default=0.5, ge=0, le=1)
    # One solution per problem: the shortest correct complete one (fewest tokens; SFT on
    # shorter correct traces wastes less context), or a seeded random correct complete one.
    choice: Literal["shortest", "random"] = "shortest"
    seed: int = 0
    # The user turn of `messages`: the bare problem text, or the exact prompt the teacher saw.
    user_message: Literal["problem", "prompt"] = "problem"
    # Balance caps (None = no cap). Capped problems are dropped in seeded-hash order, so the
    # kept subset is reproducible and not biased towards short solutions.
    max_per_source: int | None = Field(default=None, gt=0)
    max_per_band: int | None = Field(default=None, gt=0)
    # Per-domain caps, e.g. {code: 500, mcq: 200}; domains not listed are not capped.
    caps_per_domain: dict[Domain, int] = {}
    # Difficulty bands over the stage-1 pass rate: [e0,e1), [e1,e2), ..., the last one closed.
    # Quarters match k=8 samples (two pass counts per band).
    band_edges: list[float] = [0.0, 0.25, 0.5, 0.75, 1.0]

    @model_validator(mode="after")
    def _edges_increase(self) -> SplitsConfig:
        e = self.band_edges
        if len(e) < 2 or any(b <= a for a, b in zip(e, e[1:])) or e[0] != 0 or e[-1] != 1:
            raise ValueError(f"band_edges must increase from 0 to 1, got {e}")
        return self


class ExportConfig(_Section):
    """Files written under ``$R1_HOME/exports/<split>/`` by the ``split_exports`` asset."""

    splits: list[Literal["stage1_sft", "stage2_sft"]] = ["stage1_sft", "stage2_sft"]
    # parquet and jsonl for trainers and people; hf = a datasets DatasetDict via save_to_disk.
    formats: list[Literal["parquet", "jsonl", "hf"]] = ["parquet", "jsonl", "hf"]
    # Pushing is opt-in: set push_to_hub and hub_repo; the token is read from the environment
    # variable named by hub_token_env at push time and never stored or logged.
    push_to_hub: bool = False
    hub_repo: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
    hub_private: bool = True
    hub_token_env: str = "HF_TOKEN"

    @model_validator(mode="after")
    def _hub_repo_when_pushing(self) -> ExportConfig:
        if self.push_to_hub and not self.hub_repo:
            raise ValueError("push_to_hub needs key 'hub_repo' (owner/name)")
        if self.push_to_hub and "hf" not in self.formats:
            raise ValueError("push_to_hub needs 'hf' in formats")
        return self


class StorageConfig(_Section):
    """Where the tables live (``r1_assets.storage.Store``); same tables, schema and lineage on both.

    - ``duckdb``: one file, ``$R1_HOME/r1.duckdb``. One process at a time: a reader in another
      process (a ``duckdb -readonly`` session, a notebook) makes every write fail on its lock.
    - ``ducklake``: DuckDB's lakehouse format, a SQL ``catalog`` plus Parquet files under
      ``data_path``; every commit is a snapshot (``lineage.snapshot_id``) that can be read back
      (time travel). Readers never block writers. The default, measured in docs/benchmarks.md
      ("Storage backends"): 1M-row writes take a quarter of the time, the analysis queries 1.0-1.6x
      as long, and an analyst's open session no longer breaks a scheduled backfill.
    """

    backend: Literal["duckdb", "ducklake"] = "ducklake"
    # ducklake: a SQLite file (``*.sqlite``, the embedded default: one writer at a time, which
    # Store retries, and any number of readers), a DuckDB file (``*.duckdb``; it locks like the
    # duckdb backend), or ``postgres:dbname=r1 host=... user=...`` for many writers on many
    # machines. A relative path is inside R1_HOME. The PostgreSQL password is never written here:
    # libpq reads it from PGPASSWORD (or ~/.pgpass).
    catalog: str = "lake/catalog.sqlite"
    # ducklake: the Parquet files, a local folder (relative: inside R1_HOME) or an object-store
    # URL (s3://bucket/prefix/, needs duckdb-extension-httpfs). Every writer must see the same one.
    data_path: str = "lake/data/"

    @model_validator(mode="after")
    def _no_password(self) -> StorageConfig:
        if self.catalog.startswith("postgres:") and re.search(r"password\s*=", self.catalog, re.IGNORECASE):
            raise ValueError("catalog: do not put the password in the connection string; set PGPASSWORD")
        return self


class PipelineConfig(_Section):
    sources: list[SourceConfig]
    benchmarks: list[SourceConfig] = []
    dedupe: DedupeConfig = DedupeConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    models: dict[str, ModelConfig] = {}
    difficulty: DifficultyConfig = DifficultyConfig()
    distillation: DistillationConfig = DistillationConfig()
    verification: VerificationConfig = VerificationConfig()
    splits: SplitsConfig = SplitsConfig()
    export: ExportConfig = ExportConfig()
    storage: StorageConfig = StorageConfig()
    # Limits applied when normalising rows (longer rows go to rejected_rows as 'oversized').
    max_problem_chars: int = Field(default=20_000, gt=0)
    max_answer_chars: int = Field(default=2_000, gt=0)
    # Folders that source and benchmark paths must stay inside (after resolving `..` and
    # symlinks), relative to the config's folder; R1_DATA_ROOTS (os.pathsep-separated) adds
    # more. Empty (the default) = no confinement, so `../shared/data/...` keeps working.
    data_roots: list[str] = []
    # Folder the relative paths were resolved against; set by the loader.
    base_dir: str = "."

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        # Benchmarks are only matched on their text; sources are verified, so they need references.
        for src in self.sources:
            if src.domain == "code" and not src.tests:
                raise ValueError(f"sources '{src.name}': domain 'code' needs key 'tests'")
            if src.domain == "mcq" and (not src.choices or not src.answer):
                raise ValueError(f"sources '{src.name}': domain 'mcq' needs keys 'choices' and 'answer'")
        for section in ("sources", "benchmarks"):
            names = [s.name for s in getattr(self, section)]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{section}: duplicate names {dupes}")
        # Checked here, not when clean_problems opens the engine: a typo would otherwise surface
        # only after the whole pool had been matched.
        judge = self.decontamination.judge_model
        if judge is not None and judge not in self.models:
            raise ValueError(f"decontamination: judge_model '{judge}' is not a role in models"
                             f" (configured: {sorted(self.models)})")
        return self

    def source(self, name: str) -> SourceConfig:
        for src in self.sources:
            if src.name == name:
                return src
        raise ConfigError(f"no source named '{name}'; configured: {[s.name for s in self.sources]}")

    def model(self, role: str) -> ModelConfig:
        if role not in self.models:
            raise ConfigError(f"models: no model '{role}' configured; configured: {sorted(self.models)}")
        return self.models[role]

    def allowed_roots(self) -> list[Path]:
        env = [r for r in os.environ.get("R1_DATA_ROOTS", "").split(os.pathsep) if r]
        return [(Path(self.base_dir) / os.path.expanduser(r)).resolve() for r in [*self.data_roots, *env]]

    def resolve_path(self, path: str) -> Path:
        """``path`` against the config's folder; refused when it leaves every allowed root."""
        p = Path(os.path.expanduser(path))
        resolved = (p if p.is_absolute() else Path(self.base_dir) / p).resolve()
        roots = self.allowed_roots()
        if roots and not any(resolved.is_relative_to(root) for root in roots):
            raise ConfigError(
                f"path {path!r} resolves to {resolved}, outside the allowed data roots "
                f"{[str(r) for r in roots]} (config data_roots / R1_DATA_ROOTS)"
            )
        return resolved


def _format_validation_error(err: ValidationError, raw: dict) -> str:
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        where = []
        # Name list items by their 'name' so the message says which source is wrong.
        node = raw
        for part in loc:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                node = node[part]
                label = node.get("name") if isinstance(node, dict) else None
                where.append(f"'{label}'" if label else f"[{part}]")
            else:
                node = node.get(part) if isinstance(node, dict) else None
                where.append(str(part))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            key = where.pop()
            msg = f"unknown key '{key}'"
        elif e["type"] == "missing":
            key = where.pop()
            msg = f"missing key '{key}'"
        lines.append(f"{' '.join(where) or 'config'}: {msg}".replace("Value error, ", ""))
    return "; ".join(lines)


def parse_config(raw: dict, base_dir: Path | str) -> PipelineConfig:
    if not isinstance(raw, dict):
        raise ConfigError("config: the top level must be a mapping with at least 'sources'")
    try:
        return PipelineConfig(**{**raw, "base_dir": str(Path(base_dir).resolve())})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, raw)) from None


def config_path() -> Path | None:
    """The user's config file from ``R1_CONFIG``, or None for the packaged default."""
    value = os.environ.get("R1_CONFIG")
    return Path(value).expanduser().resolve() if value else None


def load_config(path: Path | str | None = None) -> PipelineConfig:
    """Load ``path``, else ``$R1_CONFIG``, else the packaged embedded default."""
    path = Path(path).expanduser().resolve() if path else config_path()
    if path is None:
        package = resources.files("r1_assets.defaults")
        text = package.joinpath(DEFAULT_CONFIG_NAME).read_text()
        # Files the default ships next to it (planted contamination copies) resolve there.
        base_dir = Path(str(package))
        origin = f"packaged {DEFAULT_CONFIG_NAME}"
    else:
        if not path.is_file():
            raise ConfigError(f"R1_CONFIG: no such file {path}")
        text = path.read_text()
        base_dir = path.parent
        origin = str(path)
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin}: not valid YAML: {err}") from None
    try:
        return parse_config(raw, base_dir)
    except ConfigError as err:
        raise ConfigError(f"{origin}: {err}") from None
