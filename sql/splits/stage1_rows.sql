-- The stage1_sft rows: the 'selected' problems of _selection (made by stage1_select) with their
-- chat messages. The text is only read for the chosen samples.
--
-- @param user_message VARCHAR: splits.user_message; problem = the problem text, else the teacher's prompt
--
-- Columns: those of stage1_sft without run_id.
SELECT s.problem_id, s.generation_id, s.source, s.domain,
       to_json([
           {'role': 'user', 'content': CASE WHEN $user_message = 'problem' THEN c.problem ELSE d.prompt END},
           {'role': 'assistant',
            'content': '<think>' || chr(10) || trim(d.reasoning, chr(32) || chr(9) || chr(10) || chr(13))
                       || chr(10) || '</think>' || chr(10) || chr(10)
                       || trim(coalesce(d.final_answer, ''), chr(32) || chr(9) || chr(10) || chr(13))}
       ]) AS messages,
       s.pass_rate, s.difficulty_band, d.model AS teacher_model, d.n_tokens, s.n_samples, s.n_correct, s.n_wrong
FROM _selection s
JOIN distillations d USING (generation_id)
JOIN clean_problems c ON c.problem_id = s.problem_id
WHERE s.outcome = 'selected'
ORDER BY s.problem_id
