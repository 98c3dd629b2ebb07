"""After the iterations: final evaluation (maths and driver), the generalist baseline, the comparison report, the deployable bundle, designs files."""
