-- Histogram of teacher distillation lengths (tokens), by teacher model, domain and verified correctness.
-- The data behind the length charts of the split and analysis assets.
--
-- @param model VARCHAR: only this teacher model (default: every model)
-- @param bins INTEGER: number of equal-width bins over [0, longest sample] (default 20)
--
-- Columns: model, domain (of the verdict, else of the clean problem, else math),
--   correctness (correct | wrong | undecided | unverified), bin_start,
--   bin_end (tokens, half-open [bin_start, bin_end)), samples
-- Speed: the bin width comes from distillations alone; the join is done once, then grouped.
WITH width AS (
    SELECT greatest(1, ceil((max(n_tokens) + 1) / coalesce(getvariable('bins'), 20)))::BIGINT AS w
    FROM distillations
    WHERE n_tokens IS NOT NULL AND (getvariable('model') IS NULL OR model = getvariable('model'))
)
SELECT d.model,
       coalesce(v.domain, c.domain, 'math') AS domain,
       CASE WHEN v.generation_id IS NULL THEN 'unverified'
            WHEN v.correct THEN 'correct'
            WHEN NOT v.correct THEN 'wrong'
            ELSE 'undecided' END AS correctness,
       (d.n_tokens // w) * w AS bin_start,
       (d.n_tokens // w + 1) * w AS bin_end,
       count(*) AS samples
FROM distillations d
LEFT JOIN verified_distillations v USING (generation_id)
LEFT JOIN clean_problems c ON c.problem_id = d.problem_id
CROSS JOIN width
WHERE d.n_tokens IS NOT NULL
  AND (getvariable('model') IS NULL OR d.model = getvariable('model'))
GROUP BY ALL
ORDER BY model, domain, correctness, bin_start
