//! `persys.analyzer.v1.AnalyzerService`.

use persys_kit::ApiError;
use persys_proto::analyzer::v1::{
    AnalysisResult, AnalyzeMetadata, AnalyzeRepositoryRequest, AnalyzeRepositoryResponse, AnalyzeRequest,
    AnalyzeResponse, LlmProvider, ValidateManifestsRequest, ValidateManifestsResponse,
    analyzer_service_server::AnalyzerService,
};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::{llm, result, tree::SourceTree, upload, validate};

/// Serves analyses and validation.
#[derive(Clone, Default)]
pub struct AnalyzerApi {
    llm: Option<llm::Client>,
}

impl AnalyzerApi {
    /// Returns the service; `llm` enables the optional enhancement.
    pub fn new(llm: Option<llm::Client>) -> Self {
        Self { llm }
    }

    async fn run(&self, metadata: AnalyzeMetadata, tree: SourceTree) -> Result<AnalysisResult, ApiError> {
        let provider = metadata.options.as_ref().map_or(0, |o| o.llm_provider);
        let llm = self.llm.as_ref().filter(|_| provider != LlmProvider::None as i32);
        tracing::info!(files = tree.len(), bytes = tree.total_bytes(), name = %metadata.name, llm = llm.is_some(), "analysing");
        let result = match llm {
            Some(client) => result::analyze_tree_with(&tree, &metadata, Some(client)).await,
            // Analysis is CPU work; keep it off the threads serving other calls.
            None => tokio::task::spawn_blocking(move || result::analyze_tree(&tree, &metadata))
                .await
                .map_err(ApiError::internal)?,
        };
        result.map_err(ApiError::from)
    }
}

#[tonic::async_trait]
impl AnalyzerService for AnalyzerApi {
    #[tracing::instrument(skip_all)]
    async fn analyze(&self, request: Request<Streaming<AnalyzeRequest>>) -> Result<Response<AnalyzeResponse>, Status> {
        let mut stream = request.into_inner();
        let mut up = upload::Upload::new();
        while let Some(message) = stream.next().await {
            up.push(message?)?;
        }
        let (metadata, tree) = up.finish()?;
        let result = self.run(metadata, tree).await?;
        Ok(Response::new(AnalyzeResponse { result: Some(result) }))
    }

    #[tracing::instrument(skip_all)]
    async fn analyze_repository(
        &self,
        request: Request<AnalyzeRepositoryRequest>,
    ) -> Result<Response<AnalyzeRepositoryResponse>, Status> {
        let r = request.into_inner();
        let tree = upload::inline(r.files)?;
        let result = self.run(r.metadata.unwrap_or_default(), tree).await?;
        Ok(Response::new(AnalyzeRepositoryResponse { result: Some(result) }))
    }

    #[tracing::instrument(skip_all)]
    async fn validate_manifests(
        &self,
        request: Request<ValidateManifestsRequest>,
    ) -> Result<Response<ValidateManifestsResponse>, Status> {
        let r = request.into_inner();
        let persona = r.persona.ok_or_else(|| ApiError::invalid("persona", "a persona is required"))?;
        if r.manifests.is_empty() {
            return Err(ApiError::invalid("manifests", "at least one manifest file is required").into());
        }
        let findings = validate::validate_files(&r.manifests, &persona, &r.namespace);
        let (error_count, warning_count, info_count) = validate::counts(&findings);
        Ok(Response::new(ValidateManifestsResponse {
            findings,
            passed: error_count == 0,
            error_count,
            warning_count,
            info_count,
        }))
    }
}
