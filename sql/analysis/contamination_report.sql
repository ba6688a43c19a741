-- Contamination report: benchmark hits by benchmark and detection method.
-- One row per (benchmark, method), plus method '(any)' per benchmark counting each pool
-- problem once. `only_this_method` = pool problems no other method flagged against that
-- benchmark (what switching the method off would let through). The example pair is the hit
-- with the smallest problem_id, pool text beside benchmark text.
--
-- Columns: benchmark, method, hits, problems, benchmark_rows, only_this_method,
--   pct_of_unique (problems / unique_problems), sources, example_problem, example_benchmark_problem
WITH hits AS (
    SELECT c.benchmark, c.method, c.problem_id, c.benchmark_row,
           u.source, u.problem, b.problem AS benchmark_problem
    FROM contamination c
    LEFT JOIN unique_problems u USING (problem_id)
    LEFT JOIN benchmark_problems b ON b.benchmark = c.benchmark AND b.benchmark_row = c.benchmark_row
),
methods_per_problem AS (
    SELECT benchmark, problem_id, count(DISTINCT method) AS n_methods FROM contamination GROUP BY ALL
),
report AS (
    SELECT h.benchmark, coalesce(h.method, '(any)') AS method,
           count(*) AS hits,
           count(DISTINCT h.problem_id) AS problems,
           count(DISTINCT h.benchmark_row) AS benchmark_rows,
           count(DISTINCT h.problem_id) FILTER (WHERE m.n_methods = 1 AND h.method IS NOT NULL) AS only_this_method,
           string_agg(DISTINCT h.source, ', ' ORDER BY h.source) AS sources,
           arg_min({'problem': h.problem, 'benchmark_problem': h.benchmark_problem}, h.problem_id) AS example
    FROM hits h JOIN methods_per_problem m USING (benchmark, problem_id)
    GROUP BY GROUPING SETS ((h.benchmark, h.method), (h.benchmark))
)
SELECT benchmark, method, hits, problems, benchmark_rows,
       CASE WHEN method = '(any)' THEN NULL ELSE only_this_method END AS only_this_method,
       round(100.0 * problems / nullif((SELECT count(*) FROM unique_problems), 0), 3) AS pct_of_unique,
       sources,
       example.problem AS example_problem,
       example.benchmark_problem AS example_benchmark_problem
FROM report
ORDER BY benchmark, method = '(any)', method
