-- Pass-rate (difficulty) histogram by source and model.
-- A problem's pass rate under a model is the view pooled_pass_rates (sql/schema.sql), the rule
-- the splits use. Problems whose reference answer could not
-- be parsed have no pass rate: they are counted in the bin 'unparseable' (bin_start NULL).
--
-- @param model VARCHAR: only this model as stored in pass_rates.model (default: every model)
-- @param bin_width DOUBLE: bin width over [0, 1] (default 0.125 = one bin per pass count at k=8)
--
-- Columns: model, source (clean_problems.source), bin, bin_start (NULL = unparseable), problems
-- Speed: count per bin first, then format the few bin labels (printf per row is the slow part).
WITH settings AS (
    SELECT coalesce(getvariable('bin_width'), 0.125)::DOUBLE AS w, getvariable('model')::VARCHAR AS only_model
),
pooled AS (
    SELECT problem_id, model, pass_rate
    FROM pooled_pass_rates
    WHERE (SELECT only_model FROM settings) IS NULL OR model = (SELECT only_model FROM settings)
),
counts AS (
    SELECT p.model, coalesce(c.source, '(not in clean_problems)') AS source,
           -- The top bin is closed, so pass rate 1.0 falls into the last bin. least() skips
           -- NULLs, hence the explicit CASE that keeps unparseable problems out of every bin.
           CASE WHEN p.pass_rate IS NOT NULL THEN
               least(floor(p.pass_rate / s.w), ceil(1 / s.w) - 1) END AS bin_index,
           count(*) AS problems
    FROM pooled p
    CROSS JOIN settings s
    LEFT JOIN clean_problems c USING (problem_id)
    GROUP BY ALL
)
SELECT c.model, c.source,
       CASE WHEN bin_index IS NULL THEN 'unparseable'
            ELSE printf('[%.3g,%.3g%s', bin_index * s.w, least(1.0, (bin_index + 1) * s.w),
                        CASE WHEN (bin_index + 1) * s.w >= 1 THEN ']' ELSE ')' END) END AS bin,
       round(bin_index * s.w, 6) AS bin_start,
       problems
FROM counts c CROSS JOIN settings s
ORDER BY model, source, bin_start NULLS LAST
