//! Model weights in safetensors: every float parameter under its module
//! path (`encoder.Sasrec.net.blocks.0.attn.query.weight`), with the
//! parameter ids in the metadata so that a resumed optimiser finds its
//! moments again.

use std::collections::HashMap;
use std::path::Path;

use hsuga_model::burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use hsuga_model::burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::TrainError;

const IDS_KEY: &str = "hsuga.param_ids";
const MODEL_KEY: &str = "hsuga.model";

struct Collect {
    path: Vec<String>,
    out: Vec<(String, u64, Vec<usize>, Vec<u8>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let data = hsuga_model::to_f32(t);
        let bytes = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.out
            .push((self.path.join("."), param.id.val(), shape, bytes));
    }
}

/// Serialises a module's float parameters; `model_tag` names the model
/// kind (checked on load).
pub fn to_bytes<M: Module>(module: &M, model_tag: &str) -> Result<Vec<u8>, TrainError> {
    let mut c = Collect {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut c);
    let ids: HashMap<&str, u64> = c
        .out
        .iter()
        .map(|(n, id, _, _)| (n.as_str(), *id))
        .collect();
    let mut meta = HashMap::new();
    meta.insert(IDS_KEY.to_string(), serde_json::to_string(&ids)?);
    meta.insert(MODEL_KEY.to_string(), model_tag.to_string());
    let views: Vec<(String, TensorView<'_>)> = c
        .out
        .iter()
        .map(|(n, _, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (n.clone(), v))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Checkpoint(e.to_string()))
}

/// Writes a module's weights atomically (temporary file + rename), so an
/// interrupted save never leaves a truncated checkpoint behind.
pub fn save<M: Module>(module: &M, model_tag: &str, path: &Path) -> Result<(), TrainError> {
    let bytes = to_bytes(module, model_tag)?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

struct Load<'a> {
    path: Vec<String>,
    st: &'a SafeTensors<'a>,
    ids: HashMap<String, u64>,
    error: Option<String>,
    loaded: usize,
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let view = match self.st.tensor(&name) {
            Ok(v) => v,
            Err(_) => {
                self.error
                    .get_or_insert(format!("checkpoint has no tensor `{name}`"));
                return param;
            }
        };
        let (id, old, mapper) = param.consume();
        let dims = old.dims();
        if view.dtype() != Dtype::F32 || view.shape() != dims.as_slice() {
            self.error.get_or_insert(format!(
                "tensor `{name}`: checkpoint has {:?} {:?}, model expects F32 {:?}",
                view.dtype(),
                view.shape(),
                dims
            ));
            return Param::from_mapped_value(id, old, mapper);
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let device = old.device();
        let mut t = Tensor::<D>::from_data(TensorData::new(data, dims), &device);
        if old.is_require_grad() {
            t = t.require_grad();
        }
        self.loaded += 1;
        let id = self.ids.get(&name).map_or(id, |&v| ParamId::from(v));
        Param::from_mapped_value(id, t, mapper)
    }
}

/// Loads weights saved by [`save`] into `module` (which fixes the expected
/// names and shapes). Fails, leaving nothing half-loaded in the caller's
/// hands, when the file is for another model or shape.
pub fn load<M: Module>(module: M, model_tag: &str, path: &Path) -> Result<M, TrainError> {
    let bytes = std::fs::read(path)?;
    from_bytes(module, model_tag, &bytes)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

pub fn from_bytes<M: Module>(module: M, model_tag: &str, bytes: &[u8]) -> Result<M, TrainError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    let tag = meta.get(MODEL_KEY).map(String::as_str).unwrap_or("?");
    if tag != model_tag {
        return Err(TrainError::Checkpoint(format!(
            "checkpoint is for model `{tag}`, this run builds `{model_tag}`"
        )));
    }
    let ids = meta
        .get(IDS_KEY)
        .map(|s| serde_json::from_str(s))
        .transpose()?
        .unwrap_or_default();
    let mut mapper = Load {
        path: Vec::new(),
        st: &st,
        ids,
        error: None,
        loaded: 0,
    };
    let module = module.map(&mut mapper);
    if let Some(e) = mapper.error {
        return Err(TrainError::Checkpoint(e));
    }
    if mapper.loaded != st.len() {
        return Err(TrainError::Checkpoint(format!(
            "checkpoint holds {} tensors, the model has {}",
            st.len(),
            mapper.loaded
        )));
    }
    Ok(module)
}
