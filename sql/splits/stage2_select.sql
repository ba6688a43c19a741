-- Stage 2 of the Light-R1 splits: classify every stage1_sft row into the temp table _selection
-- with its stage-2 pass rate and outcome (r1_assets.splits.STAGE2_OUTCOMES; 'selected' rows
-- form stage2_sft). The pooled pass rate is pass_rate_under in sql/schema.sql.
--
-- @param stage2_ids VARCHAR[]: the names of splits.stage2_model in pass_rates.model
-- @param stage2_alpha DOUBLE: splits.stage2_alpha; a stage-2 pass rate >= it is too easy
CREATE OR REPLACE TEMP TABLE _selection AS
WITH difficulty AS (
    SELECT problem_id, pass_rate FROM pass_rate_under($stage2_ids)
)
SELECT s.*, dif.pass_rate AS stage2_pass_rate,
       CASE WHEN dif.pass_rate IS NULL THEN 'unscored_stage2'
            WHEN dif.pass_rate >= $stage2_alpha THEN 'too_easy_stage2'
            WHEN s.n_wrong = 0 THEN 'teacher_all_correct'
            WHEN s.n_correct = 0 THEN 'teacher_all_wrong'
            ELSE 'selected' END AS outcome
FROM stage1_sft s LEFT JOIN difficulty dif USING (problem_id)
