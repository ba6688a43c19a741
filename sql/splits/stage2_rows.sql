-- The stage2_sft rows: the 'selected' rows of _selection (made by stage2_select).
--
-- Columns: those of stage2_sft without run_id.
SELECT problem_id, generation_id, source, domain, messages, pass_rate, stage2_pass_rate, difficulty_band,
       teacher_model, n_tokens, n_samples, n_correct, n_wrong
FROM _selection WHERE outcome = 'selected' ORDER BY problem_id
