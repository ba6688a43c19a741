-- Problems per source and outcome of the split in _selection (made by stage1_select or
-- stage2_select): the split's funnel.
--
-- Columns: source, outcome, problems
SELECT source, outcome, count(*) AS problems FROM _selection GROUP BY ALL ORDER BY source, outcome
