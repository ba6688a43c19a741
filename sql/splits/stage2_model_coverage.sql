-- Whether stage 2 can be selected: the stage1_sft rows, the pass_rates rows of the stage-2
-- model, and the models pass_rates holds (for the error that names them).
--
-- @param stage2_ids VARCHAR[]: the names of splits.stage2_model in pass_rates.model
--
-- Columns: stage1_rows, stage2_model_rows, models_present (sorted)
SELECT (SELECT count(*) FROM stage1_sft) AS stage1_rows,
       (SELECT count(*) FROM pass_rates WHERE list_contains($stage2_ids, model)) AS stage2_model_rows,
       (SELECT coalesce(list(DISTINCT model ORDER BY model), []) FROM pass_rates) AS models_present
