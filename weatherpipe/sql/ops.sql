-- Operational metadata of the pipeline (idempotent: safe to run on every start).

create table if not exists {ops}.pipeline_runs (
    run_id          text        not null,
    stage           text        not null,
    status          text        not null check (status in ('success', 'partial', 'failed')),
    rows_in         bigint      not null default 0,
    rows_out        bigint      not null default 0,
    rows_rejected   bigint      not null default 0,
    object_count    integer     not null default 0,
    offsets         jsonb       not null default '{{}}'::jsonb,
    interval_start  timestamptz,
    interval_end    timestamptz,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    duration_s      double precision,
    details         jsonb       not null default '{{}}'::jsonb,
    error           text,
    recorded_at     timestamptz not null default now(),
    primary key (run_id, stage)
);
create index if not exists pipeline_runs_started_idx on {ops}.pipeline_runs (started_at desc);

create table if not exists {ops}.bronze_manifest (
    object_key          text        primary key,
    topic               text        not null,
    kafka_partition     integer     not null,
    start_offset        bigint      not null,
    end_offset          bigint      not null,
    row_count           integer     not null,
    observed_hour       timestamptz not null,
    etag                text,
    bytes               bigint,
    written_at          timestamptz not null,
    run_id              text,
    silver_processed_at timestamptz,
    silver_run_id       text
);
create index if not exists bronze_manifest_pending_idx
    on {ops}.bronze_manifest (observed_hour) where silver_processed_at is null;
-- An object holds the event hours observed_hour .. last_observed_hour of one date. A compacted object spans Kafka
-- partitions (kafka_partition, start_offset and end_offset are -1); the objects it replaced are retired (retired_at,
-- replaced_by) in the same transaction that records it, and deleted after a grace period.
alter table {ops}.bronze_manifest add column if not exists last_observed_hour timestamptz;
alter table {ops}.bronze_manifest add column if not exists retired_at timestamptz;
alter table {ops}.bronze_manifest add column if not exists replaced_by text;
create index if not exists bronze_manifest_retired_idx
    on {ops}.bronze_manifest (retired_at) where retired_at is not null;

-- Compactions in flight: a row is written before the compacted object's PUT and marked committed in the manifest's
-- transaction, so a compaction killed in between leaves a row that names the object to delete.
create table if not exists {ops}.bronze_compactions (
    object_key      text        primary key,
    topic           text        not null,
    observed_date   date        not null,
    inputs          text[]      not null,
    run_id          text        not null,
    started_at      timestamptz not null default now(),
    committed_at    timestamptz
);

create table if not exists {ops}.deadletter_manifest (
    object_key      text        primary key,
    topic           text        not null,
    kafka_partition integer     not null,
    start_offset    bigint      not null,
    row_count       integer     not null,
    reasons         jsonb       not null,
    written_at      timestamptz not null,
    run_id          text
);

create table if not exists {ops}.api_call_budget (
    provider    text        not null,
    month       text        not null,
    calls       bigint      not null default 0,
    updated_at  timestamptz not null default now(),
    primary key (provider, month)
);
