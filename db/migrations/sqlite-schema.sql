-- story-monitor SQLite schema at revisions: 0001,0002,0003
-- Made by `python -m monitor.store.snapshot` from the migrations; do not edit.
BEGIN;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE development (
	id INTEGER NOT NULL, 
	story_id VARCHAR(64) NOT NULL, 
	"key" VARCHAR(128) NOT NULL, 
	title TEXT NOT NULL, 
	first_seen DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	score FLOAT NOT NULL, 
	novel JSON NOT NULL, 
	terms JSON NOT NULL, 
	update_of INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(update_of) REFERENCES development (id), 
	CONSTRAINT uq_development_story_key UNIQUE (story_id, "key")
);
CREATE INDEX ix_development_first_seen ON development (first_seen);
CREATE INDEX ix_development_story_id ON development (story_id);
CREATE TABLE feed_state (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	url TEXT NOT NULL, 
	current_url TEXT NOT NULL, 
	etag TEXT, 
	last_modified TEXT, 
	body_hash VARCHAR, 
	last_polled_at DATETIME, 
	last_success_at DATETIME, 
	last_status INTEGER, 
	last_error_kind VARCHAR, 
	last_error TEXT, 
	error_streak INTEGER NOT NULL, 
	failing_since DATETIME, 
	next_poll_after DATETIME, 
	disabled BOOLEAN NOT NULL, 
	disabled_reason TEXT, 
	down_alerted BOOLEAN NOT NULL, 
	polls_total INTEGER NOT NULL, 
	polls_not_modified INTEGER NOT NULL, 
	latency_avg FLOAT, 
	items_total INTEGER NOT NULL, 
	problems JSON NOT NULL, 
	created_at DATETIME NOT NULL, feed_ttl FLOAT, last_slot DATETIME, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_feed_state_name ON feed_state (name);
CREATE TABLE delivery (
	id INTEGER NOT NULL, 
	idempotency_key VARCHAR(200) NOT NULL, 
	channel VARCHAR(200) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	development_id INTEGER, 
	feed_id INTEGER, 
	payload JSON NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at DATETIME NOT NULL, 
	last_error TEXT, 
	created_at DATETIME NOT NULL, 
	sent_at DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(development_id) REFERENCES development (id), 
	FOREIGN KEY(feed_id) REFERENCES feed_state (id), 
	UNIQUE (idempotency_key)
);
CREATE INDEX ix_delivery_development_id ON delivery (development_id);
CREATE INDEX ix_delivery_due ON delivery (status, next_attempt_at);
CREATE TABLE item (
	id INTEGER NOT NULL, 
	feed_id INTEGER NOT NULL, 
	entry_id TEXT NOT NULL, 
	url TEXT, 
	title TEXT NOT NULL, 
	summary TEXT NOT NULL, 
	content TEXT NOT NULL, 
	published DATETIME NOT NULL, 
	published_from_feed BOOLEAN NOT NULL, 
	content_hash VARCHAR NOT NULL, 
	first_seen DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	revision INTEGER NOT NULL, 
	previous_title TEXT, 
	previous_text TEXT, 
	fulltext TEXT, 
	fulltext_status VARCHAR, 
	PRIMARY KEY (id), 
	FOREIGN KEY(feed_id) REFERENCES feed_state (id), 
	CONSTRAINT uq_item_feed_entry UNIQUE (feed_id, entry_id)
);
CREATE INDEX ix_item_feed_id ON item (feed_id);
CREATE INDEX ix_item_published ON item (published);
CREATE TABLE delivery_attempt (
	id INTEGER NOT NULL, 
	delivery_id INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	outcome VARCHAR(16), 
	status_code INTEGER, 
	error TEXT, 
	PRIMARY KEY (id), 
	FOREIGN KEY(delivery_id) REFERENCES delivery (id)
);
CREATE INDEX ix_delivery_attempt_delivery_id ON delivery_attempt (delivery_id);
CREATE TABLE development_source (
	id INTEGER NOT NULL, 
	development_id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	sentences JSON NOT NULL, 
	added_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(development_id) REFERENCES development (id), 
	FOREIGN KEY(item_id) REFERENCES item (id), 
	CONSTRAINT uq_devsource_dev_item UNIQUE (development_id, item_id)
);
CREATE INDEX ix_development_source_development_id ON development_source (development_id);
CREATE INDEX ix_development_source_item_id ON development_source (item_id);
CREATE TABLE story_match (
	id INTEGER NOT NULL, 
	story_id VARCHAR(64) NOT NULL, 
	item_id INTEGER NOT NULL, 
	score FLOAT NOT NULL, 
	terms JSON NOT NULL, 
	evidence JSON NOT NULL, 
	matched_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES item (id), 
	CONSTRAINT uq_match_story_item UNIQUE (story_id, item_id)
);
CREATE INDEX ix_story_match_item_id ON story_match (item_id);
CREATE INDEX ix_story_match_story_id ON story_match (story_id);
CREATE TABLE baseline_copy (
	url_hash VARCHAR(64) NOT NULL, 
	url TEXT NOT NULL, 
	text TEXT NOT NULL, 
	fetched_at DATETIME NOT NULL, 
	PRIMARY KEY (url_hash)
);
INSERT INTO alembic_version (version_num) VALUES ('0003');
COMMIT;
