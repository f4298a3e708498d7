"""zray.dag: Ray's lazy DAG API. `.bind()` on remote functions, actor classes and actor
methods makes nodes instead of calls; `InputNode` stands for the input; `.execute()`
makes the calls.

    with InputNode() as inp:
        dag = add.bind(mul.bind(inp, 2), 1)
    zray.get(dag.execute(5))      # 11
"""
from .class_node import ClassMethodNode, ClassNode
from .dag_node import DAGNode
from .function_node import FunctionNode
from .input_node import DAGInputData, InputAttributeNode, InputNode
from .output_node import MultiOutputNode

__all__ = ["ClassMethodNode", "ClassNode", "DAGInputData", "DAGNode", "FunctionNode",
           "InputAttributeNode", "InputNode", "MultiOutputNode"]
