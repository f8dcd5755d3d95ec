package phpstack

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLayoutsMatchTheCompiler holds each version's table to what the C
// compiler laid out from that version's own headers (testdata/layout.c,
// run by hand against Debian's phpX.Y-dev; its output in
// testdata/layout-X.Y.txt).
func TestLayoutsMatchTheCompiler(t *testing.T) {
	files, err := filepath.Glob("testdata/layout-*.txt")
	if err != nil || len(files) != len(layouts) {
		t.Fatalf("want one testdata/layout-X.Y.txt per known version (%d), found %v", len(layouts), files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			c := compiled(t, file)
			api := strings.TrimSuffix(strings.TrimPrefix(c["ZEND_MODULE_BUILD_ID"], "API"), ",NTS")
			l := layouts[api]
			if l == nil {
				t.Fatalf("no layout for module API %s (%s)", api, c["ZEND_MODULE_BUILD_ID"])
			}
			if !strings.HasPrefix(c["PHP_VERSION"], l.minor+".") {
				t.Errorf("layout %s is for %s, the headers are %s's", api, l.minor, c["PHP_VERSION"])
			}
			for name, got := range map[string]uint64{
				"zend_executor_globals.current_execute_data": l.egCurrentExecuteData,
				"zend_execute_data.opline":                   l.exOpline,
				"zend_execute_data.func":                     l.exFunc,
				"zend_execute_data.This.u1.type_info":        l.exCallInfo,
				"zend_execute_data.prev_execute_data":        l.exPrev,
				"sizeof(zend_execute_data)":                  l.exSize,
				"zend_function.type":                         l.fnType,
				"zend_function.common.function_name":         l.fnName,
				"zend_function.common.scope":                 l.fnScope,
				"zend_op_array.last":                         l.opLast,
				"zend_op_array.opcodes":                      l.opOpcodes,
				"zend_op_array.filename":                     l.opFilename,
				"zend_op_array.line_start":                   l.opArrayRead, // the read ends where filename does
				"zend_class_entry.type":                      l.ceType,
				"zend_class_entry.name":                      l.ceName,
				"zend_string.gc.u.type_info":                 l.strTypeInfo,
				"zend_string.len":                            l.strLen,
				"zend_string.val":                            l.strVal,
				"zend_op.extended_value":                     l.zopExtendedValue,
				"zend_op.lineno":                             l.zopLineno,
				"zend_op.opcode":                             l.zopOpcode,
				"sizeof(zend_op)":                            l.zopSize,
				"ZEND_INTERNAL_FUNCTION":                     internalFunction,
				"ZEND_USER_FUNCTION":                         userFunction,
				"ZEND_EVAL_CODE":                             evalCode,
				"ZEND_INTERNAL_CLASS":                        internalClass,
				"ZEND_USER_CLASS":                            userClass,
				"ZEND_CALL_CODE":                             callCode,
				"ZEND_CALL_TOP":                              callTop,
				"ZEND_CALL_CLOSURE":                          callClosure,
				"ZEND_INCLUDE_OR_EVAL":                       includeOrEval,
				"ZEND_EVAL":                                  incEval,
				"ZEND_INCLUDE":                               incInclude,
				"ZEND_INCLUDE_ONCE":                          incIncludeOnce,
				"ZEND_REQUIRE":                               incRequire,
				"ZEND_REQUIRE_ONCE":                          incRequireOnce,
				"IS_STRING":                                  isString,
				"IS_OBJECT":                                  isObject,
				"GC_TYPE_MASK":                               gcTypeMask,
			} {
				want, err := strconv.ParseUint(c[name], 10, 64)
				if err != nil {
					t.Errorf("%s: %s has no number for %s", api, file, name)
					continue
				}
				if got != want {
					t.Errorf("PHP %s: %s is %d in the reader's table, %d for the compiler", l.minor, name, got, want)
				}
			}
			if l.opArrayRead != l.opFilename+8 {
				t.Errorf("PHP %s: a user function is read up to %d, want the end of filename (%d)", l.minor, l.opArrayRead, l.opFilename+8)
			}
		})
	}
}

// compiled reads a layout-X.Y.txt: "name value" lines.
func compiled(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), " "); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
