-- Why teacher samples fail verification or are left out of the splits, by teacher model.
-- A sample can count under several kinds (e.g. verdict 'wrong' and format issue 'truncated').
--   verdict          verified_distillations.verdict other than 'correct'
--   format_issue     each entry of format_issues
--   finish_reason    finish_reason other than 'stop' (truncated by max_tokens, errors)
--   judge_verdict    the optional LLM judge's verdicts on samples math-verify rejected
--   split_exclusion  correct samples the splits cannot use: not finished ('not_stop'),
--                    format_ok false ('format_not_ok') or empty reasoning ('empty_reasoning')
--
-- @param model VARCHAR: only this teacher model (default: every model)
--
-- Columns: model, kind, reason, samples, pct_of_samples (of that model's verified samples)
WITH v AS (
    SELECT v.*, d.model, d.finish_reason,
           length(trim(coalesce(d.reasoning, ''), chr(32) || chr(9) || chr(10) || chr(13))) = 0 AS empty_reasoning
    FROM verified_distillations v
    JOIN distillations d USING (generation_id)
    WHERE getvariable('model') IS NULL OR d.model = getvariable('model')
),
totals AS (SELECT model, count(*) AS n FROM v GROUP BY model),
reasons AS (
    SELECT model, 'verdict' AS kind, verdict AS reason, count(*) AS samples
    FROM v WHERE verdict <> 'correct' GROUP BY ALL
    UNION ALL
    SELECT model, 'format_issue', issue, count(*)
    FROM (SELECT model, unnest(format_issues) AS issue FROM v) GROUP BY ALL
    UNION ALL
    SELECT model, 'finish_reason', coalesce(finish_reason, 'missing'), count(*)
    FROM v WHERE finish_reason IS DISTINCT FROM 'stop' GROUP BY ALL
    UNION ALL
    SELECT model, 'judge_verdict', judge_verdict, count(*)
    FROM v WHERE judge_verdict IS NOT NULL GROUP BY ALL
    UNION ALL
    SELECT model, 'split_exclusion', reason, count(*)
    FROM (
        SELECT model, unnest(list_concat(
                   CASE WHEN finish_reason IS DISTINCT FROM 'stop' THEN ['not_stop'] ELSE [] END,
                   CASE WHEN NOT format_ok THEN ['format_not_ok'] ELSE [] END,
                   CASE WHEN empty_reasoning THEN ['empty_reasoning'] ELSE [] END)) AS reason
        FROM v WHERE correct
    ) GROUP BY ALL
)
SELECT r.model, r.kind, r.reason, r.samples, round(100.0 * r.samples / t.n, 2) AS pct_of_samples
FROM reasons r JOIN totals t USING (model)
ORDER BY r.model, r.kind, r.samples DESC, r.reason
