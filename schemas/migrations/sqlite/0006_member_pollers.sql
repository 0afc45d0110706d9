-- The task queues each server has workers polling right now (a JSON list of
-- "kind|namespace|task_queue"): a server hands out the tasks of its own shards, and those of a
-- shard whose owner has no poller of that queue (engine/_task_dispatch.py).
ALTER TABLE cluster_members ADD COLUMN polling TEXT NOT NULL DEFAULT '[]';
