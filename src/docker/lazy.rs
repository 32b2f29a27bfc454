//! A runtime that connects on first use and again after failures, so the daemon starts and
//! keeps serving webhooks while Docker is down; launches fail with a clear reason meanwhile.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::Mutex;

use super::{
    BollardRuntime, ContainerEvent, ContainerRuntime, DockerError, ManagedContainer,
    RunnerContainerSpec,
};

pub struct LazyRuntime {
    host: String,
    connected: Arc<Mutex<Option<Arc<BollardRuntime>>>>,
}

impl LazyRuntime {
    pub fn new(host: &str) -> Self {
        LazyRuntime {
            host: host.to_owned(),
            connected: Arc::new(Mutex::new(None)),
        }
    }

    async fn get(
        host: &str,
        slot: &Mutex<Option<Arc<BollardRuntime>>>,
    ) -> Result<Arc<BollardRuntime>, DockerError> {
        let mut slot = slot.lock().await;
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let rt = Arc::new(BollardRuntime::connect(host).await?);
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// Runs `call` on the connected runtime; after `Unavailable`, reconnects next time (the
    /// engine may have restarted).
    async fn with<T>(
        &self,
        call: impl AsyncFnOnce(&BollardRuntime) -> Result<T, DockerError>,
    ) -> Result<T, DockerError> {
        let result = match Self::get(&self.host, &self.connected).await {
            Ok(rt) => call(&rt).await,
            Err(e) => Err(e),
        };
        if matches!(result, Err(DockerError::Unavailable(_))) {
            *self.connected.lock().await = None;
        }
        result
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for LazyRuntime {
    async fn ping(&self) -> Result<(), DockerError> {
        self.with(async |rt| rt.ping().await).await
    }

    async fn create_and_start(&self, spec: &RunnerContainerSpec) -> Result<String, DockerError> {
        self.with(async |rt| rt.create_and_start(spec).await).await
    }

    async fn remove(&self, container_id: &str) -> Result<(), DockerError> {
        self.with(async |rt| rt.remove(container_id).await).await
    }

    async fn list_managed(&self) -> Result<Vec<ManagedContainer>, DockerError> {
        self.with(async |rt| rt.list_managed().await).await
    }

    fn events(&self) -> BoxStream<'static, Result<ContainerEvent, DockerError>> {
        let (host, slot) = (self.host.clone(), self.connected.clone());
        futures::stream::once(async move {
            let result = Self::get(&host, &slot).await;
            if result.is_err() {
                *slot.lock().await = None;
            }
            result
        })
        .flat_map(|rt| match rt {
            Ok(rt) => rt.events(),
            Err(e) => futures::stream::iter([Err(e)]).boxed(),
        })
        .boxed()
    }
}
