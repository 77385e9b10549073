"""The library's end-to-end jobs, each a function with typed arguments; `egodistill.commands`
only parses arguments and calls them.

* `train.run_train(cfg)`: one model on the labels (teacher or baseline);
* `distill.run_distill(cfg)`: trained teachers' ensemble into a student;
* `evaluate.run_evaluate(run_dir)`: a run (or its teacher ensemble) on a split;
* `predict.predict_files` / `predict.predict_timelines`: video files with a run or an exported student;
* `info.describe_model(cfg)`: a model's parameters, GFLOPs and clips/s;
* `run_dir`: when a run may start in a folder, and cleaning up a failed start.

Exporting is `engine.export.export_run`; building stores, `data.prepare`; the synthetic data,
`synth.generate`; the demo, `demo.run_demo`.
"""
from egodistill.pipelines.distill import run_distill
from egodistill.pipelines.evaluate import run_evaluate
from egodistill.pipelines.train import run_train

__all__ = ["run_distill", "run_evaluate", "run_train"]
