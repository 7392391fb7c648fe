# Solutions to the "Try it" exercises of nbs/04_onnx.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: export net to try_dir / "net.onnx" (input "features", output "logits")
torch.onnx.export(net, (x,), str(try_dir / "net.onnx"), input_names=["features"], output_names=["logits"], dynamo=False)
print([n.op_type for n in onnx.load(str(try_dir / "net.onnx")).graph.node])

# %% Exercise 2
# Exercise 2: ONNX Runtime's answer for x
sess = ort.InferenceSession(str(try_dir / "net.onnx"), providers=["CPUExecutionProvider"])
ex2_logits = sess.run(["logits"], {"features": x.numpy()})[0]

# %% Exercise 3
# Exercise 3: export try_dir / "net_dynamic.onnx" with a dynamic batch dimension
torch.onnx.export(net, (x,), str(try_dir / "net_dynamic.onnx"), input_names=["features"], output_names=["logits"],
                  dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
