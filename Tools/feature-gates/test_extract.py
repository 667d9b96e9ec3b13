#!/usr/bin/env python3
"""Checks extract.py on small Go inputs shaped like upstream's: run `python3 Tools/feature-gates/test_extract.py`."""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))

# Shaped like pkg/features/kube_features.go: consts whose identifier differs from the name, comments holding
# braces and "//" inside strings, a dependencies map that must not be read as specs, a gate not yet introduced.
VERSIONED = """
package features
/* licence { } */
const (
\t// owner: @x {not a spec}
\tCPUCFSQuotaPeriod featuregate.Feature = "CustomCPUCFSQuotaPeriod"
\tSystemdWatchdog = featuregate.Feature("SystemdWatchdog")
\tURLish featuregate.Feature = "URLish" // see https://example.com/{x}
)
var defaultVersionedKubernetesFeatureGates = map[featuregate.Feature]featuregate.VersionedSpecs{
\tCPUCFSQuotaPeriod: {
\t\t{Version: version.MustParse("1.12"), Default: false, PreRelease: featuregate.Alpha},
\t},
\tSystemdWatchdog: {
\t\t{Version: version.MustParse("1.32"), Default: true, PreRelease: featuregate.Beta},
\t\t{Version: version.MustParse("1.35"), Default: true, PreRelease: featuregate.GA, LockToDefault: true}, // remove {soon}
\t},
\tURLish: {
\t\t{Version: version.MustParse("1.0"), Default: true, PreRelease: featuregate.GA},
\t\t// a comment between specs
\t\t{Version: version.MustParse("1.33"), Default: false, PreRelease: featuregate.Deprecated, LockToDefault: true},
\t},
\tgenericfeatures.Future: {
\t\t{Version: version.MustParse("1.40"), Default: false, PreRelease: featuregate.Alpha},
\t},
}
var defaultKubernetesFeatureGateDependencies = map[featuregate.Feature][]featuregate.Feature{
\tCPUCFSQuotaPeriod: {},
\tSystemdWatchdog: {CPUCFSQuotaPeriod},
}
"""

# Shaped like client-go's known_features.go and logs/api/v1 (a Default given by a const).
UNVERSIONED = """
package features
const (
\tWatchListClient Feature = "WatchListClient"
\tContextualLogging featuregate.Feature = "ContextualLogging"
\tcontextualLoggingDefault = true
)
var defaultKubernetesFeatureGates = map[Feature]FeatureSpec{
\tWatchListClient: {Default: true, PreRelease: Beta},
\tContextualLogging: {Default: contextualLoggingDefault, PreRelease: featuregate.Beta},
}
"""


class ExtractTests(unittest.TestCase):
    def run_extract(self, version, *texts):
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for i, text in enumerate(texts):
                paths.append(os.path.join(d, f"in{i}.go"))
                with open(paths[-1], "w") as f:
                    f.write(text)
            # Pad to the script's sanity minimum with plain gates.
            pad = os.path.join(d, "pad.go")
            with open(pad, "w") as f:
                f.write("var m = map[Feature]FeatureSpec{\n")
                f.writelines(f"\tPad{i}: {{Default: false, PreRelease: Alpha}},\n" for i in range(10))
                f.write("}\n")
            r = subprocess.run(
                [sys.executable, os.path.join(HERE, "extract.py"), "--version", version, *paths, pad],
                capture_output=True,
                text=True,
            )
            return r

    def lines(self, version, *texts):
        r = self.run_extract(version, *texts)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [l.strip() for l in r.stdout.splitlines() if l.strip().startswith("Spec(")]

    def test_specs_at_the_version(self):
        got = self.lines("1.36", VERSIONED, UNVERSIONED)
        self.assertIn('Spec("CustomCPUCFSQuotaPeriod", false, .alpha),', got)
        self.assertIn('Spec("SystemdWatchdog", true, .ga, locked: true),', got)
        self.assertIn('Spec("URLish", false, .deprecated, locked: true),', got)
        self.assertIn('Spec("Future", false, .preAlpha),', got)
        self.assertIn('Spec("WatchListClient", true, .beta),', got)
        self.assertIn('Spec("ContextualLogging", true, .beta),', got)
        self.assertIn('Spec("AllAlpha", false, .alpha),', got)
        self.assertIn('Spec("AllBeta", false, .beta),', got)
        names = [l.split('"')[1] for l in got]
        self.assertEqual(names, sorted(names))
        self.assertNotIn("CPUCFSQuotaPeriod", names)

    def test_an_older_version_takes_the_older_spec(self):
        got = self.lines("1.34", VERSIONED)
        self.assertIn('Spec("SystemdWatchdog", true, .beta),', got)
        self.assertIn('Spec("URLish", false, .deprecated, locked: true),', got)
        self.assertIn('Spec("URLish", true, .ga),', self.lines("1.32", VERSIONED))

    def test_conflicting_specs_are_an_error(self):
        other = VERSIONED.replace('MustParse("1.12"), Default: false', 'MustParse("1.12"), Default: true')
        r = self.run_extract("1.36", VERSIONED, other)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("CustomCPUCFSQuotaPeriod: conflicting specs", r.stderr)


if __name__ == "__main__":
    unittest.main()
