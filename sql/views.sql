-- Views for analysts, created (and re-created) by `summitwatch init` on SQLite and
-- PostgreSQL alike. {day(x)} is replaced by the database's "calendar day (UTC) of x".
-- Query them with sqlite3 or psql; see sql/queries.sql for examples.
-- URLs are shown in their display form (display_url, display_target): credentials in
-- the userinfo or in secret-looking query parameters are replaced by REDACTED. The real
-- URL stays in the tables (feeds.url, articles.url) for polling and export.

-- New coverage: stored articles that are neither seeds nor copies of an earlier article.
-- moment: when it was published, else first seen (ingest stores no publication time after
-- the first sighting), as coverage, `articles --since/--until` and the web UI count it.
CREATE VIEW v_news AS
SELECT a.id,
       COALESCE(a.published_at, a.first_seen_at) AS moment,
       {day(COALESCE(a.published_at, a.first_seen_at))} AS day,
       a.lang,
       a.title,
       a.display_url AS url,
       f.outlet,
       f.name AS feed,
       a.relevant,
       (SELECT COUNT(*) FROM articles c WHERE c.duplicate_of_id = a.id) AS copies,
       a.word_count
FROM articles a
LEFT JOIN feeds f ON f.id = a.feed_id
WHERE a.duplicate_of_id IS NULL AND a.is_seed = {false};

-- One row per story (an original of v_news with its copies and translations) and label:
-- a story carries every topic and watch item any of its articles carries (each is
-- classified in its own language), with the score and the evidence (a JSON list of
-- sentences) of the original when it carries the label itself, else of its first copy
-- that does (evidence_from). The two views after it are what to query.
CREATE VIEW v_story_labels AS
SELECT article_id, kind, label, score, moment, day, lang, title, url, outlet, evidence, evidence_from
FROM (
    SELECT n.id AS article_id, l.kind, l.label, l.score, n.moment, n.day, n.lang, n.title, n.url, n.outlet,
           l.evidence, m.id AS evidence_from,
           ROW_NUMBER() OVER (
               PARTITION BY n.id, l.kind, l.label ORDER BY CASE WHEN m.id = n.id THEN 0 ELSE 1 END, m.id
           ) AS pick
    FROM v_news n
    JOIN articles m ON m.id = n.id OR m.duplicate_of_id = n.id
    JOIN (
        SELECT article_id, 'topic' AS kind, topic AS label, score, evidence FROM article_topics
        UNION ALL
        SELECT article_id, 'watch' AS kind, item AS label, score, evidence FROM article_watch
    ) l ON l.article_id = m.id
) ranked
WHERE pick = 1;

-- One row per story and topic.
CREATE VIEW v_article_topics AS
SELECT article_id, label AS topic, score, moment, day, lang, title, url, outlet, evidence, evidence_from
FROM v_story_labels
WHERE kind = 'topic';

-- One row per story and watch item.
CREATE VIEW v_article_watch AS
SELECT article_id, label AS item, score, moment, day, lang, title, url, outlet, evidence, evidence_from
FROM v_story_labels
WHERE kind = 'watch';

-- Daily coverage per topic and per watch item (the series the change detector watches).
CREATE VIEW v_daily_coverage AS
SELECT 'topic:' || topic AS series, day, COUNT(*) AS articles
FROM v_article_topics
GROUP BY topic, day
UNION ALL
SELECT 'watch:' || item AS series, day, COUNT(*) AS articles
FROM v_article_watch
GROUP BY item, day;

-- Every copy with what it duplicates (exact: similarity 1; near duplicates below 1).
CREATE VIEW v_duplicates AS
SELECT c.id AS copy_id, c.display_url AS copy_url, c.title AS copy_title, c.lang AS copy_lang,
       o.id AS original_id, o.display_url AS original_url, o.title AS original_title,
       o.is_seed AS original_is_seed, c.similarity, c.first_seen_at AS copy_seen_at
FROM articles c
JOIN articles o ON o.id = c.duplicate_of_id;

-- Feed health: failures, last error, when it is polled next, what it brought.
CREATE VIEW v_feed_health AS
SELECT f.id, f.name, f.outlet, f.lang, f.display_url AS url, f.display_moved_url AS moved_to,
       f.enabled, f.gone_at, f.failure_count,
       f.last_status, f.last_error, f.last_polled_at, f.next_poll_at,
       -- What the feed carried: stored from it, or seen in it after another source had it
       -- (two counts, each by an index, not an OR that SQLite would test row by row).
       (SELECT COUNT(*) FROM articles a WHERE a.feed_id = f.id)
       + (SELECT COUNT(DISTINCT s.article_id) FROM sightings s
          JOIN articles seen ON seen.id = s.article_id
          WHERE s.via = 'feed:' || f.id AND (seen.feed_id IS NULL OR seen.feed_id <> f.id)) AS articles
FROM feeds f;

-- Items that failed and are not resolved: retried later, or quarantined when permanent.
CREATE VIEW v_open_failures AS
SELECT stage, display_target AS target, error, permanent, attempts, first_failed_at, last_failed_at,
       next_retry_at
FROM fetch_failures
WHERE resolved_at IS NULL;

-- Detected coverage changes and the digest that reported each, one row per event: a
-- reported change that a back-fill moves to an earlier bin keeps its row and digest.
CREATE VIEW v_coverage_changes AS
SELECT ch.series, ch.at, ch.direction, ch.count, ch.baseline, ch.explanation,
       d.id AS digest_id, d.status AS digest_status, d.sent_at
FROM coverage_changes ch
LEFT JOIN digests d ON d.id = ch.digest_id;
