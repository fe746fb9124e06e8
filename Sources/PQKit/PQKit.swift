public import CPQPlugin
