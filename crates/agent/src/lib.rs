//! Gantry agent: registers a host with the control plane and runs its tasks on Docker.
