//! Store keys of ECS records. Every key is scoped by region, as AWS regions are separate.

pub fn clusters(region: &str) -> String {
    format!("ecs/{region}/cluster/")
}

pub fn cluster(region: &str, name: &str) -> String {
    format!("ecs/{region}/cluster/{name}")
}

pub fn family(region: &str, family: &str) -> String {
    format!("ecs/{region}/family/{family}")
}

/// All revisions of all families (revisions zero-padded so keys sort numerically).
pub fn task_definitions(region: &str) -> String {
    format!("ecs/{region}/taskdef/")
}

pub fn task_definitions_of(region: &str, family: &str) -> String {
    format!("ecs/{region}/taskdef/{family}/")
}

pub fn task_definition(region: &str, family: &str, revision: u32) -> String {
    format!("ecs/{region}/taskdef/{family}/{revision:010}")
}

pub fn container_instances(region: &str, cluster: &str) -> String {
    format!("ecs/{region}/instance/{cluster}/")
}

pub fn container_instance(region: &str, cluster: &str, id: &str) -> String {
    format!("ecs/{region}/instance/{cluster}/{id}")
}

pub fn tasks(region: &str, cluster: &str) -> String {
    format!("ecs/{region}/task/{cluster}/")
}

pub fn task(region: &str, cluster: &str, id: &str) -> String {
    format!("ecs/{region}/task/{cluster}/{id}")
}

/// RunTask/StartTask idempotency: the tasks a `clientToken` created.
pub fn client_token(region: &str, cluster: &str, token: &str) -> String {
    format!("ecs/{region}/client-token/{cluster}/{token}")
}

pub fn services(region: &str, cluster: &str) -> String {
    format!("ecs/{region}/service/{cluster}/")
}

pub fn service(region: &str, cluster: &str, name: &str) -> String {
    format!("ecs/{region}/service/{cluster}/{name}")
}

pub fn service_deployments(region: &str, cluster: &str, service: &str) -> String {
    format!("ecs/{region}/service-deployment/{cluster}/{service}/")
}

pub fn service_deployment(region: &str, cluster: &str, service: &str, id: &str) -> String {
    let digits = id.rsplit('/').next().unwrap_or(id);
    format!("ecs/{region}/service-deployment/{cluster}/{service}/{digits}")
}

pub fn capacity_providers(region: &str) -> String {
    format!("ecs/{region}/capacity-provider/")
}

pub fn capacity_provider(region: &str, name: &str) -> String {
    format!("ecs/{region}/capacity-provider/{name}")
}
