-- What each environment's results cover: the newest acknowledgement time (`received_at`) of
-- its events that the aggregation has folded in. Advanced with every cycle from the rows new
-- since the last one; small (one row per environment) and logged, unlike the derived state.
CREATE TABLE IF NOT EXISTS analysis_coverage (
    environment_id      uuid PRIMARY KEY,
    newest_received_at  timestamptz NOT NULL
);
