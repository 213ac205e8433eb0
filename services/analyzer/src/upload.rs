//! Assembling an `Analyze` upload: metadata first, then file chunks, each file's chunks
//! consecutive; paths may not escape the upload root, and the size and file-count limits hold
//! while the bytes arrive, not after.

use persys_kit::ApiError;
use persys_proto::analyzer::v1::{AnalyzeMetadata, AnalyzeRequest, SourceFile, analyze_request::Payload};

use crate::{
    error::tree_error,
    tree::{SourceTree, normalize_path},
};

/// Largest chunk accepted, in bytes.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// An upload in progress.
#[derive(Default)]
pub struct Upload {
    metadata: Option<AnalyzeMetadata>,
    tree: SourceTree,
    current: Option<String>,
    messages: u64,
}

impl Upload {
    /// Returns an empty upload.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next message of the stream.
    pub fn push(&mut self, request: AnalyzeRequest) -> Result<(), ApiError> {
        self.messages += 1;
        match (request.payload, self.metadata.is_some()) {
            (Some(Payload::Metadata(m)), false) => {
                self.metadata = Some(m);
                Ok(())
            }
            (Some(Payload::Metadata(_)), true) => {
                Err(ApiError::invalid("metadata", "metadata may only be the first message of the stream"))
            }
            (Some(Payload::Chunk(_)), false) | (None, false) => {
                Err(ApiError::invalid("metadata", "the first message of the stream must be the metadata"))
            }
            (None, true) => Err(ApiError::invalid("payload", format!("message {} is empty", self.messages))),
            (Some(Payload::Chunk(chunk)), true) => {
                if chunk.data.len() > MAX_CHUNK_BYTES {
                    return Err(ApiError::invalid(
                        "chunk.data",
                        format!("chunks are limited to {MAX_CHUNK_BYTES} bytes"),
                    ));
                }
                let path = normalize_path(&chunk.path).map_err(|e| tree_error(e, "chunk.path"))?;
                if self.current.as_deref() != Some(path.as_str()) {
                    if self.tree.contains(&path) {
                        return Err(ApiError::invalid(
                            "chunk.path",
                            format!("the chunks of `{path}` are not consecutive: send each file's chunks together"),
                        ));
                    }
                    self.current = Some(path.clone());
                }
                self.tree.append(&path, &chunk.data).map_err(|e| tree_error(e, "chunk.path"))
            }
        }
    }

    /// Finishes the upload.
    pub fn finish(self) -> Result<(AnalyzeMetadata, SourceTree), ApiError> {
        let metadata = self.metadata.ok_or_else(|| ApiError::invalid("metadata", "the stream carried no metadata"))?;
        Ok((metadata, self.tree))
    }
}

/// Builds a tree from the inline files of `AnalyzeRepository`.
pub fn inline(files: Vec<SourceFile>) -> Result<SourceTree, ApiError> {
    let mut tree = SourceTree::new();
    for (i, f) in files.into_iter().enumerate() {
        let field = format!("files[{i}].path");
        let path = normalize_path(&f.path).map_err(|e| tree_error(e, &field))?;
        if tree.contains(&path) {
            return Err(ApiError::invalid(field, format!("`{path}` is sent twice")));
        }
        tree.insert(&path, f.content).map_err(|e| tree_error(e, &field))?;
    }
    Ok(tree)
}

/// Splits a tree into the messages of an `Analyze` stream (for clients and tests).
pub fn to_requests(metadata: AnalyzeMetadata, tree: &SourceTree, chunk_size: usize) -> Vec<AnalyzeRequest> {
    use persys_proto::analyzer::v1::FileChunk;
    let chunk_size = chunk_size.clamp(1, MAX_CHUNK_BYTES);
    let mut out = vec![AnalyzeRequest { payload: Some(Payload::Metadata(metadata)) }];
    for (path, content) in tree.files() {
        let mut chunks = content.chunks(chunk_size).peekable();
        if chunks.peek().is_none() {
            out.push(AnalyzeRequest {
                payload: Some(Payload::Chunk(FileChunk { path: path.to_owned(), data: Vec::new(), mode: 0 })),
            });
        }
        for data in chunks {
            out.push(AnalyzeRequest {
                payload: Some(Payload::Chunk(FileChunk { path: path.to_owned(), data: data.to_vec(), mode: 0 })),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use persys_proto::analyzer::v1::FileChunk;

    use super::*;

    fn chunk(path: &str, data: &[u8]) -> AnalyzeRequest {
        AnalyzeRequest { payload: Some(Payload::Chunk(FileChunk { path: path.into(), data: data.to_vec(), mode: 0 })) }
    }

    fn meta() -> AnalyzeRequest {
        AnalyzeRequest { payload: Some(Payload::Metadata(AnalyzeMetadata::default())) }
    }

    #[test]
    fn chunks_reassemble_in_order() {
        let mut tree = SourceTree::new();
        tree.insert("a/Dockerfile", b"FROM alpine\nEXPOSE 80\n".to_vec()).unwrap();
        tree.insert("empty", Vec::new()).unwrap();
        let mut up = Upload::new();
        for r in to_requests(AnalyzeMetadata::default(), &tree, 5) {
            up.push(r).unwrap();
        }
        assert_eq!(up.finish().unwrap().1, tree);
    }

    #[test]
    fn protocol_errors() {
        let mut up = Upload::new();
        assert!(matches!(up.push(chunk("a", b"x")), Err(ApiError::InvalidArgument(_))));
        let mut up = Upload::new();
        up.push(meta()).unwrap();
        assert!(matches!(up.push(meta()), Err(ApiError::InvalidArgument(_))));
        up.push(chunk("a", b"1")).unwrap();
        up.push(chunk("b", b"2")).unwrap();
        assert!(matches!(up.push(chunk("a", b"3")), Err(ApiError::InvalidArgument(_))));
        match up.push(chunk("../../etc/passwd", b"x")) {
            Err(ApiError::InvalidArgument(v)) => assert_eq!(v[0].field, "chunk.path"),
            other => panic!("{other:?}"),
        }
    }
}
