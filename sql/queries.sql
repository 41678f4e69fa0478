-- Analyst queries over the views in sql/views.sql. Each runs on SQLite and PostgreSQL.

-- 1. The latest Power of Siberia 2 coverage, with the sentence that put it there.
SELECT day, lang, outlet, title, url, evidence
FROM v_article_watch
WHERE item = 'power_of_siberia_2'
ORDER BY moment DESC
LIMIT 20;

-- 2. Articles per topic and language since a date (change it to suit).
SELECT topic, lang, COUNT(*) AS articles
FROM v_article_topics
WHERE day >= '2026-10-01'
GROUP BY topic, lang
ORDER BY topic, articles DESC;

-- 3. The most syndicated stories: originals with the most copies.
SELECT id, title, outlet, copies
FROM v_news
WHERE copies > 0
ORDER BY copies DESC, moment DESC
LIMIT 20;

-- 4. What was reported to Slack, and when.
SELECT series, at, direction, count, baseline, explanation, digest_status, sent_at
FROM v_coverage_changes
ORDER BY at DESC;

-- 5. Feeds that are failing.
SELECT name, url, failure_count, last_error, next_poll_at
FROM v_feed_health
WHERE failure_count > 0
ORDER BY failure_count DESC;
