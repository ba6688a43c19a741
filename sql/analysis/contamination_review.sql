-- Contamination review: every flagged pool row with its best benchmark match side by side.
-- One row per flagged unique problem. The best match is the benchmark row that the most
-- methods agree on (then the highest score), among the pairs that removed the problem when
-- there are any; the other columns give that pair's score under each method (NULL = the method
-- did not flag this pair) and how many methods agree on it. With decontamination.judge_model
-- set, judge_verdict is the paraphrase judge's answer on that pair (NULL = not judged), and
-- `removed` is false for a problem every one of whose hits the judge called DIFFERENT: it is
-- in clean_problems. Ordered with those first, then weakest evidence first (fewest agreeing
-- methods, lowest best score), so a reviewer reads the doubtful calls before the obvious copies.
--
-- Columns: problem_id, source, problem, benchmark, benchmark_row, benchmark_problem,
--   ngram_score, exact_short_score, digit_stripped_score, minhash_score, semantic_score,
--   methods_agreeing, methods, benchmark_rows_matched, matched_problem_id, evidence,
--   judge_verdict, judge_model, removed
WITH pair AS (
    SELECT problem_id, benchmark, benchmark_row,
           max(score) FILTER (WHERE method = 'ngram')          AS ngram_score,
           max(score) FILTER (WHERE method = 'exact_short')    AS exact_short_score,
           max(score) FILTER (WHERE method = 'digit_stripped') AS digit_stripped_score,
           max(score) FILTER (WHERE method = 'minhash')        AS minhash_score,
           max(score) FILTER (WHERE method = 'semantic')       AS semantic_score,
           count(DISTINCT method)                               AS methods_agreeing,
           string_agg(DISTINCT method, ', ' ORDER BY method)    AS methods,
           max(score)                                           AS best_score,
           arg_max(matched_problem_id, score)                   AS matched_problem_id,
           arg_max(evidence, score)                             AS evidence,
           -- one judge answer per (member, benchmark row) pair, whichever methods found it
           max(judge_verdict)                                   AS judge_verdict,
           max(judge_model)                                     AS judge_model,
           -- the rule of r1_assets.decontamination.removes_problem: only DIFFERENT lifts a hit
           bool_or(judge_verdict IS DISTINCT FROM 'DIFFERENT')  AS pair_removes
    FROM contamination
    GROUP BY ALL
),
ranked AS (
    SELECT *,
           count(*) OVER (PARTITION BY problem_id) AS benchmark_rows_matched,
           bool_or(pair_removes) OVER (PARTITION BY problem_id) AS removed,
           row_number() OVER (PARTITION BY problem_id
                              ORDER BY pair_removes DESC, methods_agreeing DESC, best_score DESC, benchmark,
                                       benchmark_row) AS rank
    FROM pair
)
SELECT r.problem_id, u.source, u.problem, r.benchmark, r.benchmark_row, b.problem AS benchmark_problem,
       r.ngram_score, r.exact_short_score, r.digit_stripped_score, r.minhash_score, r.semantic_score,
       r.methods_agreeing, r.methods, r.benchmark_rows_matched, r.matched_problem_id, r.evidence,
       r.judge_verdict, r.judge_model, r.removed
FROM ranked r
LEFT JOIN unique_problems u USING (problem_id)
LEFT JOIN benchmark_problems b ON b.benchmark = r.benchmark AND b.benchmark_row = r.benchmark_row
WHERE r.rank = 1
ORDER BY r.removed, r.methods_agreeing, r.best_score, r.problem_id
