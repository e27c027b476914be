//! Inference on plain `f32` slices: `[n, 15, h, w]` row-major B1+ input in, `[n, 1, h, w]` SAR10g
//! (W/kg) out, with the input checked before it reaches the network.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::Generator;
use crate::error::{Error, Result};

/// Samples per forward pass in [`predict`]: bounds memory for long stacks of slices (activations
/// of the paper-size network are ~10 MB per 256 x 256 sample); larger batches give no speed-up on
/// the CPU backend.
const PREDICT_CHUNK: usize = 16;

/// Build a `[n, c, h, w]` tensor on `device` from row-major `data`, checking its length and that
/// every value is finite. `name` names the input in errors.
pub fn input_tensor(
    name: &str,
    data: &[f32],
    dims: [usize; 4],
    device: &Device,
) -> Result<Tensor<4>> {
    check_values(name, data, dims)?;
    Ok(Tensor::from_data(
        TensorData::new(data.to_vec(), dims),
        device,
    ))
}

/// `data` holds exactly the values of shape `dims`, all finite.
fn check_values(name: &str, data: &[f32], dims: [usize; 4]) -> Result<()> {
    let len: usize = dims.iter().product();
    if data.len() != len {
        return Err(Error::invalid(
            name,
            format!("{len} values for shape {dims:?}"),
            format!("{} values", data.len()),
        ));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            name,
            "finite values",
            format!("{} at flat index {i}", data[i]),
        ));
    }
    Ok(())
}

/// Predict SAR10g maps: `x` is `[n, C, h, w]` row-major (C = the generator's input channels), the
/// result `[n, out_channels, h, w]` row-major in W/kg.
///
/// Runs the generator in inference mode (no dropout, no autodiff) on `device`, in chunks of a few
/// samples. Errors: a wrong length, a non-finite value, `h` or `w` not a multiple of `2^depth`,
/// or a non-finite prediction (a broken network).
pub fn predict(
    g: &Generator,
    x: &[f32],
    n: usize,
    h: usize,
    w: usize,
    device: &Device,
) -> Result<Vec<f32>> {
    let c = g.config().in_channels;
    g.check_input([n, c, h, w])?;
    check_values("network input", x, [n, c, h, w])?;
    let sample = c * h * w;
    let g = g.valid().to_device(device);
    let mut out = Vec::with_capacity(n * g.config().out_channels * h * w);
    for chunk in x.chunks(PREDICT_CHUNK * sample) {
        let m = chunk.len() / sample;
        let input = Tensor::from_data(TensorData::new(chunk.to_vec(), [m, c, h, w]), device);
        let pred = g
            .forward(input)
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Computation(format!("reading the network output: {e:?}")))?;
        if let Some(i) = pred.iter().position(|v| !v.is_finite()) {
            return Err(Error::Computation(format!(
                "the network predicted {} at output index {}: its weights are broken",
                pred[i],
                out.len() + i
            )));
        }
        out.extend_from_slice(&pred);
    }
    Ok(out)
}
