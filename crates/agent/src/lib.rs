//! Gantry agent: registers a host with the control plane and runs its tasks on Docker.
//!
//! - **Registration**: `RegisterContainerInstance` with CPU (cores × 1024), MEMORY (MiB minus a
//!   reserve), reserved PORTS (plus the metadata port), capabilities and `--attribute`s; the
//!   instance ARN is checkpointed and sent again after a restart so the identity is kept.
//!   `ClusterNotFoundException` → `CreateCluster`, then retry.
//! - **Assignments**: `GET /agent/v1/connect` (SigV4, service `ecs`), one JSON `AgentMessage` per
//!   line. A full-state payload stops everything of ours it does not list; silence for three
//!   heartbeat intervals or the end of the stream → reconnect with backoff (250 ms → 10 s).
//! - **Task actors** (one tokio task per task, small message enum): pull → create → start in
//!   `dependsOn` order → RUNNING; essential exit / desired STOPPED → stop (SIGTERM, SIGKILL after
//!   `stopTimeout`) → STOPPED → containers removed. Reports go through an ordered per-task queue
//!   (`SubmitTaskStateChange`, `SubmitContainerStateChange`), retried until HTTP 200, dropped on
//!   a 4xx rejection.
//! - **Images**: images of Gantry's own registry (host:port of the endpoint) are pulled with a
//!   token from ECR `GetAuthorizationToken`; others anonymously. Default behaviour
//!   [`ImagePullBehavior::PreferCached`]: a locally present image is used without pulling (for
//!   our own registry, pulled again when the tag's digest changed; a failed pull of a present
//!   image is not an error). A container's `repositoryCredentials` authenticate its image's pull.
//! - **Secrets**: a task whose definition has `secrets`, `logConfiguration.secretOptions` or
//!   `repositoryCredentials` first fetches their values (`POST /agent/v1/task-secrets`); they are
//!   kept in memory only and go into the container's environment, the awslogs options and the
//!   pull. A value that cannot be resolved stops the task with the control plane's
//!   `ResourceInitializationError` reason.
//! - **Re-adoption**: containers carry the ECS contract labels plus `gantry.container-instance`;
//!   at start the agent lists them, rebuilds its tasks from them and the checkpoint, keeps
//!   running ones running, and removes those of tasks the control plane no longer lists.
//!   Containers without our instance label are never touched.
//! - **Logs**: `awslogs` containers log with `json-file`; the agent ships their output to the
//!   Logs API with a checkpointed position per container ([`logs`]).
//! - **Task metadata v4** ([`metadata`]): served on loopback and on the Docker bridge gateway,
//!   injected as `ECS_CONTAINER_METADATA_URI_V4` / `ECS_CONTAINER_METADATA_URI`.
//! - **Task roles** ([`credentials`]): a task with a `taskRoleArn` gets its role's session
//!   credentials from the control plane (`POST /agent/v1/task-credentials`) before its
//!   containers are created, refreshed at half their lifetime; they are served on
//!   `169.254.170.2` (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`) to that task's containers only.
//!   A host that cannot serve that address does not offer
//!   `com.amazonaws.ecs.capability.task-iam-role`, and fails a task whose role came by override.
//! - **awsvpc**: each awsvpc task gets a pause container ([`pause`]) at the address the control
//!   plane allocated, on the Gantry-owned bridge network of its subnet (created on first use,
//!   shared by the agents of one Engine); the task's containers join its network namespace.
//!   The pause container stopping stops the task; it is removed before the STOPPED report so
//!   the address is free when the control plane hands it out again.
//! - **Security groups** ([`netfilter`]): the host's policy, followed from
//!   `GET /ec2/v1/network-policy`, enforced in iptables chains the agent owns, hooked from
//!   `DOCKER-USER`. An awsvpc task starts only once its rules are in place, and not at all on a
//!   host that cannot enforce them.
//! - **Fargate sizes** ([`cgroup`]): each container of a Fargate task gets the task's CPU quota
//!   and memory limit, and all of them (the pause container too) run in a cgroup of the task
//!   (Docker's `CgroupParent`) holding the same limits, so together they stay within the
//!   task's size. The cgroup goes with the task's containers; a host where the agent cannot
//!   make one does not run Fargate tasks.
//!
//! - **Metrics** ([`metrics`]): task starts, Docker Engine call latency and errors, stats samples,
//!   for Prometheus (`gantry agent --metrics-listen`).
//!
//! Must not depend on the store (DB).

mod actor;
mod agent;
pub mod cgroup;
pub mod checkpoint;
pub mod client;
pub mod config;
pub mod credentials;
pub mod docker;
pub mod logs;
pub mod metadata;
pub mod metrics;
pub mod netfilter;
pub mod pause;
pub mod runtime;
mod shared;
pub mod spec;
pub mod task_protection;
pub mod usage;

pub use agent::{AgentError, run, run_with_runtime, uninstall};
pub use config::{AgentConfig, ImagePullBehavior};
pub use docker::DockerRuntime;
pub use runtime::ContainerRuntime;
