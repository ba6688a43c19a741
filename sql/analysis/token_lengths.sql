-- Token length distribution of teacher distillations, by teacher model, domain and verified correctness.
-- One row per (model, domain, correctness): sample count and length quantiles. Long correct traces
-- cost training context; a wrong class much longer than the correct one usually means
-- truncation or repetition (see verification_failures).
--
-- @param model VARCHAR: only this teacher model (default: every model)
--
-- Columns: model, domain, correctness (correct | wrong | undecided | unverified), samples,
--   truncated (finish_reason <> 'stop'), mean_tokens, p10_tokens, p50_tokens, p90_tokens, max_tokens
-- Speed: one join; the three quantiles come from one quantile_disc call (one sort per group).
SELECT model, domain, correctness, samples, truncated, mean_tokens,
       q[1] AS p10_tokens, q[2] AS p50_tokens, q[3] AS p90_tokens, max_tokens
FROM (
    SELECT d.model,
           coalesce(v.domain, c.domain, 'math') AS domain,
           CASE WHEN v.generation_id IS NULL THEN 'unverified'
                WHEN v.correct THEN 'correct'
                WHEN NOT v.correct THEN 'wrong'
                ELSE 'undecided' END AS correctness,
           count(*) AS samples,
           count(*) FILTER (WHERE d.finish_reason IS DISTINCT FROM 'stop') AS truncated,
           round(avg(d.n_tokens), 1) AS mean_tokens,
           quantile_disc(d.n_tokens, [0.1, 0.5, 0.9]) AS q,
           max(d.n_tokens) AS max_tokens
    FROM distillations d
    LEFT JOIN verified_distillations v USING (generation_id)
    LEFT JOIN clean_problems c ON c.problem_id = d.problem_id
    WHERE getvariable('model') IS NULL OR d.model = getvariable('model')
    GROUP BY ALL
)
ORDER BY model, domain, correctness
