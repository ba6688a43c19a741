-- Pass-rate (difficulty) histogram by source and model.
-- A problem's pass rate under a model pools its pass_rates rows whose reference parsed:
-- sum(n_correct) / sum(k), the rule the splits use. Problems whose reference answer could not
-- be parsed have no pass rate: they are counted in the bin 'unparseable' (bin_start NULL).
--
-- @param model VARCHAR: only this model as stored in pass_rates.model (default: every model)
-- @param bin_width DOUBLE: bin width over [0, 1] (default 0.125 = one bin per pass count at k=8)
--
-- Columns: model, source (clean_problems.source), bin, bin_start (NULL = unparseable), problems
WITH pooled AS (
    SELECT problem_id, model,
           sum(n_correct) FILTER (WHERE reference_status = 'ok' AND pass_rate IS NOT NULL)::DOUBLE
             / nullif(sum(k) FILTER (WHERE reference_status = 'ok' AND pass_rate IS NOT NULL), 0) AS pass_rate
    FROM pass_rates
    WHERE getvariable('model') IS NULL OR model = getvariable('model')
    GROUP BY ALL
),
binned AS (
    SELECT p.model, coalesce(c.source, '(not in clean_problems)') AS source,
           -- The top bin is closed, so pass rate 1.0 falls into the last bin. least() skips
           -- NULLs, hence the explicit CASE that keeps unparseable problems out of every bin.
           CASE WHEN p.pass_rate IS NOT NULL THEN
               least(floor(p.pass_rate / coalesce(getvariable('bin_width'), 0.125)),
                     ceil(1 / coalesce(getvariable('bin_width'), 0.125)) - 1)
                 * coalesce(getvariable('bin_width'), 0.125) END AS bin_start
    FROM pooled p
    LEFT JOIN clean_problems c USING (problem_id)
)
SELECT model, source,
       CASE WHEN bin_start IS NULL THEN 'unparseable'
            ELSE printf('[%.3g,%.3g%s', bin_start, least(1.0, bin_start + coalesce(getvariable('bin_width'), 0.125)),
                        CASE WHEN bin_start + coalesce(getvariable('bin_width'), 0.125) >= 1 THEN ']' ELSE ')' END) END AS bin,
       round(bin_start, 6) AS bin_start,
       count(*) AS problems
FROM binned
GROUP BY ALL
ORDER BY model, source, bin_start NULLS LAST
