-- Stage 1 of the Light-R1 splits: classify every clean problem into the temp table _selection,
-- one row per problem with its pass rate, difficulty band, teacher sample counts, the chosen
-- sample and its outcome (r1_assets.splits.STAGE1_OUTCOMES; 'selected' rows form stage1_sft).
-- The rules are documented in r1_assets/splits.py; the pooled pass rate (pass_rate_under) and
-- the usable-sample rule (distillation_samples.usable) are views in sql/schema.sql.
--
-- @param difficulty_ids VARCHAR[]: the names of difficulty.model in pass_rates.model
-- @param alpha DOUBLE: splits.alpha; a problem with pass rate >= alpha is too easy
-- @param seed BIGINT: splits.seed, for the random choice and the caps
-- @param choice VARCHAR: splits.choice, shortest | random
-- @param band_inner_edges DOUBLE[]: splits.band_edges without the first and last edge
-- @param band_labels VARCHAR[]: the label of each band (r1_assets.splits.band_labels)
-- @param max_per_source BIGINT: splits.max_per_source (a huge number when unset)
-- @param max_per_band BIGINT: splits.max_per_band (a huge number when unset)
-- @param cap_domains VARCHAR[]: the domains of splits.caps_per_domain
-- @param domain_caps BIGINT[]: their caps, in the same order
-- @param no_cap BIGINT: the cap of a domain not in caps_per_domain (a huge number)
--
-- Speed (1M generations): one join of the generation-sized tables, aggregated per problem
-- (counts and the chosen sample together); the cap windows only see the narrow eligible rows.
CREATE OR REPLACE TEMP TABLE _selection AS
WITH difficulty AS (
    SELECT problem_id, pass_rate FROM pass_rate_under($difficulty_ids)
),
samples AS (
    SELECT problem_id,
           count(*) AS n_samples,
           count(*) FILTER (WHERE correct) AS n_correct,
           count(*) FILTER (WHERE NOT correct) AS n_wrong,
           -- The first usable sample in splits.choice order: shortest = fewest tokens, then
           -- shortest text; random = md5(seed:generation_id); ties by generation_id.
           arg_min(generation_id, {
               'random_key': CASE WHEN $choice = 'random' THEN md5($seed::VARCHAR || ':' || generation_id) END,
               'tokens': CASE WHEN $choice = 'shortest' THEN coalesce(n_tokens, 2147483647) END,
               'chars': CASE WHEN $choice = 'shortest' THEN length(reasoning) + length(coalesce(final_answer, '')) END,
               'generation_id': generation_id
           }) FILTER (WHERE usable) AS generation_id
    FROM distillation_samples
    GROUP BY problem_id
),
classified AS (
    SELECT c.problem_id, c.source, c.domain, dif.pass_rate,
           list_extract($band_labels, 1 + len(list_filter($band_inner_edges, lambda e: dif.pass_rate >= e)))
               AS difficulty_band,
           s.n_samples, s.n_correct, s.n_wrong, s.generation_id,
           CASE WHEN dif.pass_rate IS NULL THEN 'unscored'
                WHEN dif.pass_rate >= $alpha THEN 'too_easy'
                WHEN s.n_samples IS NULL THEN 'not_distilled'
                WHEN s.n_correct = 0 THEN 'no_correct_sample'
                WHEN s.generation_id IS NULL THEN 'no_complete_correct_sample'
                ELSE 'eligible' END AS outcome
    FROM clean_problems c
    LEFT JOIN difficulty dif USING (problem_id)
    LEFT JOIN samples s USING (problem_id)
),
by_source AS (
    SELECT problem_id, difficulty_band, md5($seed::VARCHAR || ':cap:' || problem_id) AS cap_key,
           row_number() OVER (PARTITION BY source ORDER BY cap_key) AS source_rank,
           row_number() OVER (PARTITION BY domain ORDER BY cap_key) AS domain_rank,
           coalesce($domain_caps[list_position($cap_domains, domain)], $no_cap) AS domain_cap
    FROM classified WHERE outcome = 'eligible'
),
by_band AS (
    SELECT problem_id, source_rank, domain_rank, domain_cap,
           CASE WHEN source_rank <= $max_per_source AND domain_rank <= domain_cap THEN
                row_number() OVER (PARTITION BY difficulty_band, source_rank <= $max_per_source AND domain_rank <= domain_cap
                                   ORDER BY cap_key)
           END AS band_rank
    FROM by_source
)
SELECT c.* EXCLUDE (outcome),
       CASE WHEN c.outcome <> 'eligible' THEN c.outcome
            WHEN b.source_rank > $max_per_source THEN 'capped_by_source'
            WHEN b.domain_rank > b.domain_cap THEN 'capped_by_domain'
            WHEN b.band_rank > $max_per_band THEN 'capped_by_band'
            ELSE 'selected' END AS outcome
FROM classified c LEFT JOIN by_band b USING (problem_id)
