// Shared by the Thresholding op (codesign_thresholding.v) and the VVAU's activation
// (codesign_vvau.v): the popcount of their NT compare bits. An op that instantiates it lists
// this file in its ``extra_templates`` so the RTL flow copies it next to the op's core.
//
// Balanced binary adder tree, N inputs of IW bits -> OW bits, a register after every level
// (latency clog2(N) cycles; N = 1: a wire). Heap layout: node i = node 2i + node 2i+1, leaves
// at NP..NP+N-1 (NP = next power of two >= N), missing leaves are zero.
module codesign_adder_tree #(
    parameter integer N = 2,
    parameter integer IW = 4,
    parameter integer OW = 6,
    parameter integer SIGNED = 1
) (
    input  wire            clk,
    input  wire            en,
    input  wire [N*IW-1:0] in,
    output wire [OW-1:0]   out
);
    localparam integer NP = (N > 1) ? (1 << $clog2(N)) : 1;
    wire [2*NP*OW-1:0] node;
    genvar i;
    generate
        for (i = NP; i < 2 * NP; i = i + 1) begin : g_leaf
            if (i - NP < N) begin : g_in
                wire [IW-1:0] v = in[(i-NP)*IW +: IW];
                if (OW > IW) begin : g_ext
                    assign node[i*OW +: OW] = {{(OW-IW){(SIGNED != 0) ? v[IW-1] : 1'b0}}, v};
                end else begin : g_trunc
                    assign node[i*OW +: OW] = v[OW-1:0];
                end
            end else begin : g_zero
                assign node[i*OW +: OW] = {OW{1'b0}};
            end
        end
        for (i = 1; i < NP; i = i + 1) begin : g_add
            reg [OW-1:0] r;
            always @(posedge clk) if (en) r <= node[2*i*OW +: OW] + node[(2*i+1)*OW +: OW];
            assign node[i*OW +: OW] = r;
        end
    endgenerate
    assign node[0 +: OW] = {OW{1'b0}};
    assign out = node[OW +: OW];
endmodule
