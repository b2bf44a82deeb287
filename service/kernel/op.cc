// The custom-op plumbing of op.h, and RegisterCustomOps: the library's entry point.

#include "op.h"

namespace focal {

const OrtApi* api = nullptr;

OrtStatus* error(const char* op, const std::string& message) {
  return api->CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + ": " + message).c_str());
}

OrtStatus* input_shape(OrtKernelContext* context, size_t index, const OrtValue** value,
                       std::vector<int64_t>* shape) {
  FOCAL_TRY(api->KernelContext_GetInput(context, index, value));
  OrtTensorTypeAndShapeInfo* info = nullptr;
  FOCAL_TRY(api->GetTensorTypeAndShape(*value, &info));
  size_t rank = 0;
  OrtStatus* status = api->GetDimensionsCount(info, &rank);
  if (status == nullptr) {
    shape->assign(rank, 0);
    status = api->GetDimensions(info, shape->data(), rank);
  }
  api->ReleaseTensorTypeAndShapeInfo(info);
  return status;
}

OrtStatus* count_attribute(const OrtKernelInfo* info, const char* op, const char* name,
                           int64_t* value) {
  FOCAL_TRY(api->KernelInfoGetAttribute_int64(info, name, value));
  if (*value < 1) return error(op, std::string("attribute ") + name + " must be >= 1");
  return nullptr;
}

namespace {

const OpSpec& spec_of(const OrtCustomOp* op) { return *reinterpret_cast<const Op*>(op)->spec; }

OrtStatus* ORT_API_CALL create_kernel(const OrtCustomOp* op, const OrtApi*,
                                      const OrtKernelInfo* info, void** kernel) {
  return spec_of(op).create(info, kernel);
}
const char* ORT_API_CALL op_name(const OrtCustomOp* op) { return spec_of(op).name; }
const char* ORT_API_CALL provider(const OrtCustomOp*) { return nullptr; }  // CPU
ONNXTensorElementDataType ORT_API_CALL input_type(const OrtCustomOp* op, size_t index) {
  return spec_of(op).inputs[index];
}
size_t ORT_API_CALL input_count(const OrtCustomOp* op) { return spec_of(op).inputs.size(); }
ONNXTensorElementDataType ORT_API_CALL output_type(const OrtCustomOp* op, size_t index) {
  return spec_of(op).outputs[index];
}
size_t ORT_API_CALL output_count(const OrtCustomOp* op) { return spec_of(op).outputs.size(); }
OrtCustomOpInputOutputCharacteristic ORT_API_CALL required(const OrtCustomOp*, size_t) {
  return INPUT_OUTPUT_REQUIRED;
}
OrtMemType ORT_API_CALL default_memory(const OrtCustomOp*, size_t) { return OrtMemTypeDefault; }
int ORT_API_CALL one(const OrtCustomOp*) { return 1; }

}  // namespace

Op make_op(const OpSpec* spec) {
  Op op{};
  OrtCustomOp& base = op.base;
  base.version = kApiVersion;
  base.GetName = op_name;
  base.GetExecutionProviderType = provider;
  base.GetInputType = input_type;
  base.GetInputTypeCount = input_count;
  base.GetOutputType = output_type;
  base.GetOutputTypeCount = output_count;
  base.GetInputCharacteristic = required;
  base.GetOutputCharacteristic = required;
  base.GetInputMemoryType = default_memory;
  base.GetVariadicInputMinArity = one;
  base.GetVariadicInputHomogeneity = one;
  base.GetVariadicOutputMinArity = one;
  base.GetVariadicOutputHomogeneity = one;
  base.CreateKernelV2 = create_kernel;
  base.KernelComputeV2 = spec->compute;
  base.KernelDestroy = spec->destroy;
  base.GetStartVersion = one;  // op set version 1 only
  base.GetEndVersion = one;
  op.spec = spec;
  return op;
}

}  // namespace focal

// The entry point onnxruntime's register_custom_ops_library looks up.
extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* base) {
  using focal::api;
  api = base->GetApi(focal::kApiVersion);
  if (api == nullptr) return nullptr;  // an onnxruntime older than 1.17: the ops stay unknown
  OrtCustomOpDomain* domain = nullptr;
  FOCAL_TRY(api->CreateCustomOpDomain(focal::kDomain, &domain));
  FOCAL_TRY(api->CustomOpDomain_Add(domain, &focal::multiclass_evaluation.base));
  FOCAL_TRY(api->CustomOpDomain_Add(domain, &focal::multiclass_evaluation_ranking.base));
  FOCAL_TRY(api->CustomOpDomain_Add(domain, &focal::multilabel_evaluation.base));
  return api->AddCustomOpDomain(options, domain);  // the domain lives as long as the process
}
