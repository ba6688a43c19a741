-- r1-curator DuckDB schema. Applied idempotently by r1_assets.storage on every connection
-- that writes. Every stage table carries run_id; `lineage` records one row per write.
-- Row-level lineage: stage*_sft.generation_id -> distillations -> pass_rates / clean_problems
-- -> contamination -> unique_problems.cluster_id -> raw_problems (source, source_row).

CREATE TABLE IF NOT EXISTS raw_problems (
    problem_id   VARCHAR NOT NULL,   -- stable hash of the normalised problem text
    source       VARCHAR NOT NULL,   -- configured source name = partition key
    source_row   BIGINT  NOT NULL,   -- 0-based row index in the source as read
    problem      VARCHAR NOT NULL,   -- whitespace/unicode-normalised problem text
    answer       VARCHAR,            -- reference answer, kept as given (mcq: the correct letter, original order)
    domain       VARCHAR NOT NULL DEFAULT 'math', -- math | code | mcq | puzzle: which verifier checks it
    tests        JSON,               -- code: ["assert ...", ...] or {"inputs": [...], "outputs": [...]}
    choices      JSON,               -- mcq: the option texts in their original order
    source_kind  VARCHAR NOT NULL,   -- file | hf | reasoning_gym
    source_ref   VARCHAR NOT NULL,   -- file path, hub id@revision, or gym task:seed
    metadata     JSON,               -- the source row's other fields
    run_id       VARCHAR NOT NULL,
    PRIMARY KEY (source, source_row)
);

CREATE TABLE IF NOT EXISTS rejected_rows (
    source       VARCHAR NOT NULL,
    source_row   BIGINT,
    stage        VARCHAR NOT NULL,   -- the asset that rejected the row
    reason       VARCHAR NOT NULL,   -- short machine-readable reason, e.g. missing_answer
    detail       VARCHAR,            -- human-readable detail (truncated value, error text)
    run_id       VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS unique_problems (
    problem_id   VARCHAR PRIMARY KEY,
    cluster_id   VARCHAR NOT NULL,   -- problem_id of the cluster's representative (kept row)
    source       VARCHAR NOT NULL,
    source_row   BIGINT  NOT NULL,
    problem      VARCHAR NOT NULL,
    answer       VARCHAR,
    domain       VARCHAR NOT NULL DEFAULT 'math',
    cluster_size INTEGER NOT NULL,
    run_id       VARCHAR NOT NULL
);

-- Every problem that was removed as a duplicate, and the representative that replaced it.
CREATE TABLE IF NOT EXISTS duplicate_problems (
    problem_id   VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,
    source_row   BIGINT  NOT NULL,
    cluster_id   VARCHAR NOT NULL,
    domain       VARCHAR NOT NULL DEFAULT 'math',
    method       VARCHAR NOT NULL,   -- exact | minhash | semantic (dedupe.semantic)
    similarity   DOUBLE,
    run_id       VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS benchmark_problems (
    benchmark    VARCHAR NOT NULL,   -- configured benchmark name
    benchmark_row BIGINT NOT NULL,   -- 0-based row index in the benchmark as read
    problem_id   VARCHAR NOT NULL,
    problem      VARCHAR NOT NULL,
    answer       VARCHAR,
    domain       VARCHAR NOT NULL DEFAULT 'math',
    source_ref   VARCHAR NOT NULL,   -- file path or hub id@revision it was read from
    run_id       VARCHAR NOT NULL,
    PRIMARY KEY (benchmark, benchmark_row)
);

-- One row per configured benchmark per load: whether it loaded, and why not.
CREATE TABLE IF NOT EXISTS benchmark_loads (
    benchmark    VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,   -- loaded | failed | empty
    row_count    BIGINT  NOT NULL,
    rows_rejected BIGINT NOT NULL,
    source_ref   VARCHAR,
    error        VARCHAR,            -- the load error, phrased for the config's author
    run_id       VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS contamination (
    problem_id    VARCHAR NOT NULL,  -- the unique_problems row (cluster representative) excluded
    matched_problem_id VARCHAR NOT NULL, -- the cluster member whose text matched (= problem_id, or a near-duplicate)
    benchmark     VARCHAR NOT NULL,
    benchmark_row BIGINT  NOT NULL,
    method        VARCHAR NOT NULL,  -- ngram | exact_short | digit_stripped | minhash | semantic
    score         DOUBLE,            -- ngram: share of the benchmark row's evidence n-grams; minhash: Jaccard; semantic: cosine; else 1
    evidence      VARCHAR,           -- the matching n-gram or similarity explanation
    run_id        VARCHAR NOT NULL,
    -- decontamination.judge_model's EQUIVALENT | DIFFERENT | AMBIGUOUS on this pair (NULL = not
    -- judged). A DIFFERENT row is kept for the audit but does not remove problem_id.
    judge_verdict VARCHAR,
    judge_model   VARCHAR            -- the judge's model name, as generations.model
);
-- Stores made before the judge existed: CREATE TABLE IF NOT EXISTS leaves their table as it was.
ALTER TABLE contamination ADD COLUMN IF NOT EXISTS judge_verdict VARCHAR;
ALTER TABLE contamination ADD COLUMN IF NOT EXISTS judge_model VARCHAR;

CREATE TABLE IF NOT EXISTS clean_problems (
    problem_id   VARCHAR PRIMARY KEY,
    source       VARCHAR NOT NULL,
    source_row   BIGINT  NOT NULL,
    problem      VARCHAR NOT NULL,
    answer       VARCHAR,
    domain       VARCHAR NOT NULL DEFAULT 'math',
    run_id       VARCHAR NOT NULL
);

-- Raw engine outputs, one row per sample, for every stage that samples a model.
-- Kept so that re-scoring never needs regeneration; also the resume checkpoint.
CREATE TABLE IF NOT EXISTS generations (
    generation_id VARCHAR PRIMARY KEY, -- hash(purpose, problem_id, model, params_hash, sample_idx)
    purpose       VARCHAR NOT NULL,    -- pass_rate | distillation | judge | contamination_judge
    problem_id    VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    params_hash   VARCHAR NOT NULL,
    params        JSON    NOT NULL,
    sample_idx    INTEGER NOT NULL,
    prompt        VARCHAR NOT NULL,
    text          VARCHAR,
    n_prompt_tokens INTEGER,
    n_tokens      INTEGER,             -- completion tokens, reasoning included
    n_reasoning_tokens INTEGER,        -- usage.completion_tokens_details.reasoning_tokens, or counted
                                       -- inside the think block (in-process vLLM); NULL when unknown
    cost_usd      DOUBLE,              -- from models.<role>.pricing and the usage; NULL without pricing
    finish_reason VARCHAR,
    latency_s     DOUBLE,
    error         VARCHAR,
    shard         VARCHAR,
    run_id        VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL
);

-- Stores created before reasoning tokens and cost were recorded.
ALTER TABLE generations ADD COLUMN IF NOT EXISTS n_reasoning_tokens INTEGER;
ALTER TABLE generations ADD COLUMN IF NOT EXISTS cost_usd DOUBLE;

-- Stable shard of each clean problem (pass_rates partitions); never reassigned once made.
CREATE TABLE IF NOT EXISTS problem_shards (
    problem_id   VARCHAR PRIMARY KEY,
    shard        VARCHAR NOT NULL,    -- shard-00000, shard-00001, ...
    run_id       VARCHAR NOT NULL
);

-- One row per (problem, model): samples in generations (purpose 'pass_rate', same params_hash).
CREATE TABLE IF NOT EXISTS pass_rates (
    problem_id   VARCHAR NOT NULL,
    domain       VARCHAR NOT NULL DEFAULT 'math',
    verifier     VARCHAR,             -- the domain verifier and its version, e.g. "math@1 math-verify 0.9.0"
    model        VARCHAR NOT NULL,    -- models.<role>.name (e.g. small_model, an HF id)
    params_hash  VARCHAR NOT NULL,    -- r1_assets.engines.params_hash (model, sampling, prompt)
    k            INTEGER NOT NULL,    -- samples scored (error-free generations)
    n_correct    INTEGER,             -- NULL unless reference_status = 'ok'
    pass_rate    DOUBLE,              -- n_correct / k; NULL unless reference_status = 'ok'
    reference_status VARCHAR NOT NULL,-- ok | unparseable_reference | missing_reference | no_samples
    n_boxed      INTEGER,             -- samples that wrote \boxed{}
    n_last_number INTEGER,            -- samples whose answer came from the last-number fallback
    n_unparseable_answer INTEGER,     -- samples with no extractable answer or code (count as wrong)
    n_undecided  INTEGER,             -- verification timeout/error (count as wrong)
    shard        VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS distillations (
    generation_id VARCHAR PRIMARY KEY,
    problem_id    VARCHAR NOT NULL,
    model         VARCHAR NOT NULL,
    params_hash   VARCHAR NOT NULL,
    params        JSON NOT NULL,
    sample_idx    INTEGER NOT NULL,
    prompt        VARCHAR NOT NULL,
    text          VARCHAR,
    reasoning     VARCHAR,            -- inside <think>...</think> when present
    final_answer  VARCHAR,            -- the part after the reasoning block
    n_prompt_tokens INTEGER,
    n_tokens      INTEGER,
    finish_reason VARCHAR,
    shard         VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS verified_distillations (
    generation_id   VARCHAR PRIMARY KEY,
    problem_id      VARCHAR NOT NULL,
    domain          VARCHAR NOT NULL DEFAULT 'math',
    correct         BOOLEAN,          -- the domain verifier's decision; NULL when it could not be decided
    -- math_verify | last_number (verification.lenient) | sandbox_tests | unsandboxed_tests | extract_code
    -- | mcq_boxed | mcq_answer_is | mcq_last_letter | mcq_letter | score_answer | none (no reference)
    method          VARCHAR NOT NULL,
    verifier        VARCHAR,          -- the verifier and its version, e.g. "code@1 bwrap 0.8.0"
    -- correct | wrong | unparseable_reference | unparseable_answer | timeout | error | no_code
    verdict         VARCHAR NOT NULL,
    extracted_answer VARCHAR,
    format_ok       BOOLEAN NOT NULL,
    format_issues   VARCHAR[],        -- e.g. {unclosed_think, empty_reasoning, no_think, no_final_answer, truncated, repetition}
    judge_model     VARCHAR,          -- set when the optional LLM judge looked at the sample
    judge_verdict   VARCHAR,          -- EQUIVALENT | DIFFERENT | AMBIGUOUS (never changes `correct`)
    detail          VARCHAR,          -- why a verdict is undecided (timeout, parse failure, worker crash)
    shard           VARCHAR NOT NULL,
    run_id          VARCHAR NOT NULL
);
-- Stores created before `detail` existed.
ALTER TABLE verified_distillations ADD COLUMN IF NOT EXISTS detail VARCHAR;
-- Stores created before domains existed: every earlier row is math.
ALTER TABLE raw_problems ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE raw_problems ADD COLUMN IF NOT EXISTS tests JSON;
ALTER TABLE raw_problems ADD COLUMN IF NOT EXISTS choices JSON;
ALTER TABLE unique_problems ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE duplicate_problems ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE benchmark_problems ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE clean_problems ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE pass_rates ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE pass_rates ADD COLUMN IF NOT EXISTS verifier VARCHAR;
ALTER TABLE verified_distillations ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE verified_distillations ADD COLUMN IF NOT EXISTS verifier VARCHAR;

-- The contamination rows that keep their problem out of clean_problems: all but those the
-- paraphrase judge called DIFFERENT (r1_assets.decontamination.removes_problem, on frames).
CREATE OR REPLACE VIEW removing_contamination AS
SELECT * FROM contamination WHERE judge_verdict IS DISTINCT FROM 'DIFFERENT';

-- What each clean problem is verified against, by domain: the answer, and from its raw row
-- the tests (code), the choices (mcq) and the entry metadata (puzzle). pass_rates and
-- verified_distillations both read it.
CREATE OR REPLACE VIEW problem_references AS
SELECT c.problem_id, coalesce(c.domain, 'math') AS domain, c.problem, c.answer, r.tests, r.choices, r.metadata
FROM clean_problems c
LEFT JOIN raw_problems r ON r.source = c.source AND r.source_row = c.source_row;

-- Per-problem rollup of the verified teacher samples (one row per problem and teacher model).
-- all_agree: every sample is decided and they are all correct or all wrong (Light-R1 stage 2
-- keeps the problems where they do not agree).
CREATE VIEW IF NOT EXISTS distillation_rollups AS
SELECT d.problem_id,
       d.model,
       count(*)                                   AS n_samples,
       count(*) FILTER (WHERE v.correct)          AS correctness_count,
       count(*) FILTER (WHERE NOT v.correct)      AS wrong_count,
       count(*) FILTER (WHERE v.correct IS NULL)  AS undecided_count,
       coalesce(bool_or(v.correct), false)        AS any_correct,
       (count(*) FILTER (WHERE v.correct IS NULL) = 0
        AND count(DISTINCT v.correct) = 1)        AS all_agree,
       count(*) FILTER (WHERE v.correct AND v.format_ok) AS correct_format_ok_count,
       count(*) FILTER (WHERE v.judge_verdict = 'EQUIVALENT') AS judge_equivalent_count
FROM distillations d
JOIN verified_distillations v USING (generation_id)
GROUP BY d.problem_id, d.model;

-- Shared rules. Each is written once, here, and read by the splits (sql/splits) and the
-- analysis pack (sql/analysis) alike.

-- Which pass_rates rows count towards a pooled pass rate: the reference answer parsed and the
-- row has samples and a rate.
CREATE OR REPLACE MACRO counts_toward_pass_rate(reference_status, pass_rate, k) AS
    reference_status = 'ok' AND pass_rate IS NOT NULL AND k > 0;

-- The pooled pass rate of each problem under each model: every pass_rates row of that model
-- (any params_hash or shard) that counts; pass_rate = n_correct / k over them. k, n_correct and
-- pass_rate are NULL when no row counts (reference unparseable or missing, or no samples): such
-- a problem has no pass rate.
CREATE OR REPLACE VIEW pooled_pass_rates AS
SELECT problem_id, model, k, n_correct, n_correct::DOUBLE / k AS pass_rate
FROM (
    SELECT problem_id, model,
           sum(k) FILTER (WHERE counts_toward_pass_rate(reference_status, pass_rate, k)) AS k,
           sum(n_correct) FILTER (WHERE counts_toward_pass_rate(reference_status, pass_rate, k)) AS n_correct
    FROM pass_rates
    GROUP BY problem_id, model
);

-- The pooled pass rate of each scored problem under one model known by several names (its
-- role, name and served name: r1_assets.splits.model_ids): the same counting rows pooled over
-- those names, in one grouping (pooling per model first and then over the names gives the same
-- sums at twice the cost). model_ids NULL pools every model.
CREATE OR REPLACE MACRO pass_rate_under(model_ids) AS TABLE
SELECT problem_id, sum(n_correct)::DOUBLE / sum(k) AS pass_rate
FROM pass_rates
WHERE counts_toward_pass_rate(reference_status, pass_rate, k)
  AND (model_ids IS NULL OR list_contains(model_ids, model))
GROUP BY problem_id;

-- Every teacher sample with its verdict, and whether it is usable as an SFT solution: verified
-- correct, well formatted, finished (finish_reason 'stop') and with non-whitespace reasoning
-- (a regexp, as trim() is ~20x slower on a million rows). Unverified samples are not usable.
CREATE VIEW IF NOT EXISTS distillation_samples AS
SELECT d.*, v.correct, v.format_ok, v.verdict,
       coalesce(v.correct AND v.format_ok AND d.finish_reason = 'stop'
                AND regexp_matches(coalesce(d.reasoning, ''), '\S'), false) AS usable
FROM distillations d
LEFT JOIN verified_distillations v USING (generation_id);

-- Light-R1 SFT splits (rules in r1_assets/splits.py and sql/splits). Each table is replaced as a whole;
-- its selection params (alpha, choice, seed, caps, models) are in `lineage.params`.
CREATE TABLE IF NOT EXISTS stage1_sft (
    problem_id    VARCHAR PRIMARY KEY,
    generation_id VARCHAR NOT NULL,   -- the chosen teacher sample (distillations.generation_id)
    source        VARCHAR NOT NULL,   -- clean_problems.source (the dedupe cluster's representative)
    domain        VARCHAR NOT NULL DEFAULT 'math',
    messages      JSON NOT NULL,      -- [{"role":"user",...},{"role":"assistant","content":"<think>\n...\n</think>\n\n..."}]
    pass_rate     DOUBLE NOT NULL,    -- under difficulty.model, pooled over its pass_rates rows
    difficulty_band VARCHAR NOT NULL, -- splits.band_edges interval holding pass_rate, e.g. [0,0.25)
    teacher_model VARCHAR NOT NULL,
    n_tokens      INTEGER,            -- of the chosen sample
    n_samples     INTEGER NOT NULL,   -- teacher samples of this problem
    n_correct     INTEGER NOT NULL,   -- of which verified correct
    n_wrong       INTEGER NOT NULL,   -- of which verified wrong (the rest are undecided)
    run_id        VARCHAR NOT NULL
);

CREATE TABLE IF NOT EXISTS stage2_sft (
    problem_id    VARCHAR PRIMARY KEY,
    generation_id VARCHAR NOT NULL,   -- the same chosen sample as in stage1_sft
    source        VARCHAR NOT NULL,
    domain        VARCHAR NOT NULL DEFAULT 'math',
    messages      JSON NOT NULL,
    pass_rate     DOUBLE NOT NULL,    -- under difficulty.model (stage 1)
    stage2_pass_rate DOUBLE NOT NULL, -- under splits.stage2_model
    difficulty_band VARCHAR NOT NULL,
    teacher_model VARCHAR NOT NULL,
    n_tokens      INTEGER,
    n_samples     INTEGER NOT NULL,
    n_correct     INTEGER NOT NULL,
    n_wrong       INTEGER NOT NULL,
    run_id        VARCHAR NOT NULL
);

ALTER TABLE stage1_sft ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';
ALTER TABLE stage2_sft ADD COLUMN IF NOT EXISTS domain VARCHAR DEFAULT 'math';

CREATE TABLE IF NOT EXISTS lineage (
    table_name   VARCHAR NOT NULL,
    partition    VARCHAR NOT NULL,    -- '' for an unpartitioned table
    run_id       VARCHAR NOT NULL,
    inputs       JSON NOT NULL,       -- [{"table":..., "partition":..., "row_count":...}]
    row_count    BIGINT NOT NULL,
    params       JSON NOT NULL,
    code_version VARCHAR NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    snapshot_id  BIGINT               -- the DuckLake snapshot this write committed; NULL on the duckdb backend
);
-- Stores created before `snapshot_id` existed.
ALTER TABLE lineage ADD COLUMN IF NOT EXISTS snapshot_id BIGINT;
